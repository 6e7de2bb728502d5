/** mulberry32: a small seeded generator of floats in [0, 1), so randomized tests and benchmarks replay. */
export function seededUnit(seed: number): () => number {
  let state = seed >>> 0;
  return () => {
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** The same stream as integers in [0, n), the shape of the allocator's random source. */
export function seededInt(seed: number): (n: number) => number {
  const unit = seededUnit(seed);
  return (n) => Math.floor(unit() * n);
}
