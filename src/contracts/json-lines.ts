import type { Readable } from 'node:stream';

/**
 * Splits a byte stream into lines without ever holding more than `maxLineBytes` of one line: an
 * oversized line is reported once and skipped to its end, so a flood cannot exhaust the helper's memory.
 * Lines must be valid UTF-8; the last line counts even without a newline before EOF.
 */
export type LineEvent = { kind: 'line'; text: string } | { kind: 'too-long'; bytes: number } | { kind: 'bad-utf8' };

export function readJsonLines(input: Readable, maxLineBytes: number, onLine: (event: LineEvent) => void): Promise<void> {
  const decoder = new TextDecoder('utf-8', { fatal: true });
  let chunks: Buffer[] = [];
  let size = 0;
  let overflow = 0; // bytes of an oversized line seen so far; 0 when not in one

  const emit = (buf: Buffer) => {
    if (buf.length === 0) return;
    let text: string;
    try {
      text = decoder.decode(buf);
    } catch {
      onLine({ kind: 'bad-utf8' });
      return;
    }
    onLine({ kind: 'line', text: text.endsWith('\r') ? text.slice(0, -1) : text });
  };

  const take = (piece: Buffer) => {
    if (overflow > 0) {
      overflow += piece.length;
      return;
    }
    if (size + piece.length > maxLineBytes) {
      overflow = size + piece.length;
      chunks = [];
      size = 0;
      return;
    }
    chunks.push(piece);
    size += piece.length;
  };

  const endLine = () => {
    if (overflow > 0) onLine({ kind: 'too-long', bytes: overflow });
    else emit(Buffer.concat(chunks, size));
    chunks = [];
    size = 0;
    overflow = 0;
  };

  return new Promise((resolve, reject) => {
    input.on('data', (data: Buffer | string) => {
      let buf = typeof data === 'string' ? Buffer.from(data) : data;
      for (let nl = buf.indexOf(10); nl >= 0; nl = buf.indexOf(10)) {
        take(buf.subarray(0, nl));
        endLine();
        buf = buf.subarray(nl + 1);
      }
      if (buf.length > 0) take(buf);
    });
    input.on('end', () => {
      if (size > 0 || overflow > 0) endLine();
      resolve();
    });
    input.on('error', reject);
  });
}
