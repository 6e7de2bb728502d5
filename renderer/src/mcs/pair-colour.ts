/**
 * A stable colour per MCS pair: the same pair is the same colour on every screen and every run, so a
 * VM's process, its images and a second VM that holds the same pair are seen together at a glance.
 */

/** FNV-1a (32 bit): small, fast, and spreads short similar strings ("s0:c1,c2" / "s0:c1,c3") apart. */
function fnv1a(text: string): number {
  let hash = 0x811c9dc5;
  for (let i = 0; i < text.length; i++) {
    hash ^= text.charCodeAt(i);
    hash = Math.imul(hash, 0x01000193) >>> 0;
  }
  return hash;
}

/** murmur3's finaliser: FNV alone leaves pairs that differ in the last digits close together. */
function avalanche(hash: number): number {
  let h = hash;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b) >>> 0;
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35) >>> 0;
  h ^= h >>> 16;
  return h >>> 0;
}

/**
 * Sixteen colours chosen to be told apart at a glance and to read as text on white; a computed hue wheel
 * puts too many neighbours in one green or purple. Two pairs share a colour one time in sixteen, which is
 * why conflicts are also outlined and always spelled out.
 */
const PALETTE = [
  '#1f6fb2', '#c0392b', '#2e8b57', '#8e44ad', '#d35400', '#138d90', '#b03a7a', '#6b7d12',
  '#3847a8', '#8d5524', '#0b84c6', '#4c9a2a', '#d81b60', '#6a4fc8', '#b07d00', '#4a6b82',
] as const;

/** The colour of a canonical pair: the same on every screen and every run. */
export function pairColour(pair: string): string {
  return PALETTE[avalanche(fnv1a(pair)) % PALETTE.length] as string;
}
