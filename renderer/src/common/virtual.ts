import { observeElementRect, type Rect, type Virtualizer } from '@tanstack/react-virtual';

/**
 * Windowing for the long lists (1,000 VMs, a 100 × 10,000 audit matrix): only the rows and columns in
 * view, plus a few either side, are in the DOM. @tanstack/react-virtual does the arithmetic (offsets,
 * measured row heights, scrolling to an index); the screens keep their own markup and ARIA row/column
 * indexes, so a screen reader still hears "row 512 of 1,001".
 */

// A scroll box not laid out yet (or a DOM without layout) measures 0 × 0, which would window nothing:
// until it has a size, assume a window's worth.
const BEFORE_LAYOUT: Rect = { width: 1280, height: 820 };

export function observeRectOrWindow<T extends Element>(instance: Virtualizer<T, Element>, cb: (rect: Rect) => void): (() => void) | undefined {
  return observeElementRect(instance, (rect) => cb(rect.width === 0 && rect.height === 0 ? BEFORE_LAYOUT : rect));
}
