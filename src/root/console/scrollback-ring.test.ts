import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { ScrollbackRing } from './scrollback-ring';

const bytes = (text: string): Buffer => Buffer.from(text, 'latin1');

describe('ScrollbackRing', () => {
  it('keeps everything while under capacity', () => {
    const ring = new ScrollbackRing(16);
    ring.append(bytes('hello '));
    ring.append(bytes('world'));
    expect(ring.snapshot().toString()).toBe('hello world');
    expect(ring.totalWritten).toBe(11);
    expect(ring.startOffset).toBe(0);
    expect(ring.size).toBe(11);
  });

  it('wraps around and keeps the newest bytes in order', () => {
    const ring = new ScrollbackRing(8);
    ring.append(bytes('abcdef'));
    ring.append(bytes('ghij'));
    expect(ring.snapshot().toString()).toBe('cdefghij');
    expect(ring.startOffset).toBe(2);
    ring.append(bytes('kl'));
    expect(ring.snapshot().toString()).toBe('efghijkl');
  });

  it('keeps the tail of a single write larger than the ring', () => {
    const ring = new ScrollbackRing(4);
    ring.append(bytes('ab'));
    ring.append(bytes('0123456789'));
    expect(ring.snapshot().toString()).toBe('6789');
    expect(ring.totalWritten).toBe(12);
    expect(ring.startOffset).toBe(8);
  });

  it('handles a huge single write (64 MiB into 1 MiB) without cycling through it', () => {
    const ring = new ScrollbackRing(1024 * 1024);
    const huge = Buffer.alloc(64 * 1024 * 1024);
    for (let i = 0; i < huge.length; i += 4096) huge.writeUInt32BE(i, i);
    ring.append(bytes('x'));
    ring.append(huge);
    expect(ring.totalWritten).toBe(huge.length + 1);
    expect(ring.snapshot().equals(huge.subarray(huge.length - ring.capacity))).toBe(true);
  });

  it('answers since() with the bytes after an offset', () => {
    const ring = new ScrollbackRing(8);
    ring.append(bytes('abcdefgh'));
    expect(ring.since(5)).toEqual({ from: 5, bytes: bytes('fgh'), dropped: 0 });
    expect(ring.since(8)).toEqual({ from: 8, bytes: Buffer.alloc(0), dropped: 0 });
    expect(ring.since(2, 3)).toEqual({ from: 2, bytes: bytes('cde'), dropped: 0 });
  });

  it('reports how many bytes an old offset has lost', () => {
    const ring = new ScrollbackRing(4);
    ring.append(bytes('abcdefghij'));
    expect(ring.since(1)).toEqual({ from: 6, bytes: bytes('ghij'), dropped: 5 });
    expect(ring.since(0).dropped).toBe(6);
  });

  it('copies into a given buffer as much as fits', () => {
    const ring = new ScrollbackRing(8);
    ring.append(bytes('abcdefghij'));
    const target = Buffer.alloc(4);
    expect(ring.readInto(3, target)).toBe(4);
    expect(target.toString()).toBe('defg');
    expect(ring.readInto(8, target)).toBe(2);
    expect(target.subarray(0, 2).toString()).toBe('ij');
    expect(() => ring.readInto(1, target)).toThrow(RangeError);
  });

  it('rejects offsets that were never written', () => {
    const ring = new ScrollbackRing(4);
    ring.append(bytes('ab'));
    expect(() => ring.since(3)).toThrow(RangeError);
    expect(() => ring.since(-1)).toThrow(RangeError);
    expect(() => ring.since(0.5)).toThrow(RangeError);
    expect(() => new ScrollbackRing(0)).toThrow(RangeError);
  });

  it('matches a keep-the-last-N model for any sequence of writes', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 30 }),
        fc.nat(),
        (capacity, chunks, offsetSeed) => {
          const ring = new ScrollbackRing(capacity);
          for (const chunk of chunks) ring.append(chunk);
          const all = Buffer.concat(chunks);
          const kept = all.subarray(Math.max(0, all.length - capacity));
          expect(ring.snapshot().equals(kept)).toBe(true);
          expect(ring.totalWritten).toBe(all.length);
          const offset = offsetSeed % (all.length + 1);
          const slice = ring.since(offset);
          const from = Math.max(offset, all.length - kept.length);
          expect(slice.from).toBe(from);
          expect(slice.dropped).toBe(from - offset);
          expect(slice.bytes.equals(all.subarray(from))).toBe(true);
        },
      ),
    );
  });

  it('takes reads in place and hands back views of them, not copies', () => {
    const ring = new ScrollbackRing(64, 16);
    const room = ring.reserve();
    expect(room.length).toBe(16);
    room.write('console', 'latin1');
    const output = ring.commit(7);
    expect(output.bytes.toString('latin1')).toBe('console');
    expect(output.bytes.buffer).toBe(room.buffer);
    expect(output.bytes.byteOffset).toBe(room.byteOffset);
    const view = ring.slice(2, 3);
    expect(view.bytes.toString('latin1')).toBe('nso');
    expect(view.segment).toBe(output.segment);
    expect(view.bytes.buffer).toBe(room.buffer);
  });

  it('cuts a slice at the end of its segment, and copies across segments', () => {
    const ring = new ScrollbackRing(16, 4);
    ring.append(bytes('abcdefghij'));
    expect(ring.slice(2).bytes.toString()).toBe('cd');
    expect(ring.slice(4).bytes.toString()).toBe('efgh');
    expect(ring.slice(10).bytes.length).toBe(0);
    expect(ring.since(1).bytes.toString()).toBe('bcdefghij');
    expect(() => ring.commit(5)).toThrow(RangeError);
  });

  it('does not reuse a segment a socket write still holds, even once the ring let go of it', () => {
    const ring = new ScrollbackRing(8, 4);
    ring.append(bytes('abcd'));
    const sent = ring.slice(0);
    ring.segments.retain(sent.segment); // what segments.write does until the socket has written the bytes
    ring.append(bytes('efghijklmnop'));
    expect(ring.startOffset).toBe(8);
    expect(sent.bytes.toString()).toBe('abcd');
    ring.segments.release(sent.segment);
    // Let go of and not held: the next segment may be it.
    ring.append(bytes('qrst'));
    expect(ring.snapshot().toString()).toBe('mnopqrst');
  });

  it('matches a keep-the-last-N model for any sequence of reads into its room', () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 40 }),
        fc.integer({ min: 1, max: 40 }),
        fc.array(fc.uint8Array({ maxLength: 60 }), { maxLength: 30 }),
        (capacity, segmentSeed, reads) => {
          const ring = new ScrollbackRing(capacity, 1 + (segmentSeed % capacity));
          const written: Buffer[] = [];
          for (const read of reads) {
            const room = ring.reserve();
            const length = Math.min(room.length, read.length);
            room.set(read.subarray(0, length));
            const view = ring.commit(length);
            expect(view.bytes.equals(read.subarray(0, length))).toBe(true);
            written.push(Buffer.from(read.subarray(0, length)));
          }
          const all = Buffer.concat(written);
          expect(ring.totalWritten).toBe(all.length);
          expect(ring.snapshot().equals(all.subarray(Math.max(0, all.length - capacity)))).toBe(true);
        },
      ),
    );
  });
});
