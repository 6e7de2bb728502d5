import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { dominates, formatLevel, parseLevel, parseRange, type Level } from './context';
import {
  InUseEntryError, McsAllocator, McsAllocatorError, McsConflictError, McsExhaustedError, McsStateError, type InUseEntry,
} from './mcs-allocator';
import { DEFAULT_CATEGORY_RANGE, type CategoryRange } from './policy-profile';
import { seededInt } from '../../../test/support/seeded-random';


const range = (first: number, last: number): CategoryRange => ({ sensitivity: 0, first, last });
const small = (seed = 1) => new McsAllocator({ range: range(0, 3), random: seededInt(seed) });
const text = (level: Level) => formatLevel(level);
const pairs = (first: number, last: number): string[] => {
  const out: string[] = [];
  for (let a = first; a <= last; a++) for (let b = a + 1; b <= last; b++) out.push(`s0:c${a},c${b}`);
  return out.map((l) => formatLevel(parseLevel(l)));
};

/** Allocates until the range is exhausted, returning the canonical levels handed out. */
function drain(allocator: McsAllocator, prefix = 'vm'): string[] {
  const got: string[] = [];
  while (allocator.freeCount() > 0) got.push(text(allocator.allocate(`${prefix}${got.length}`)));
  return got;
}

describe('McsAllocator basics', () => {
  it('counts n(n-1)/2 pairs: 523,776 for c0.c1023, 6 for c0.c3', () => {
    expect(new McsAllocator({ range: DEFAULT_CATEGORY_RANGE }).pairCount).toBe(523_776);
    expect(small().pairCount).toBe(6);
    expect(small().freeCount()).toBe(6);
  });

  it('hands out distinct pairs A < B inside the range until it is full', () => {
    const allocator = new McsAllocator({ range: range(10, 17), random: seededInt(7) });
    const got = drain(allocator);
    expect(got).toHaveLength(28);
    expect(new Set(got).size).toBe(28);
    for (const level of got) {
      const [a, b] = parseLevel(level).categories as [number, number];
      expect(a).toBeLessThan(b);
      expect(a).toBeGreaterThanOrEqual(10);
      expect(b).toBeLessThanOrEqual(17);
    }
    expect(allocator.inUseCount()).toBe(28);
  });

  it('uses the default Web Crypto source when none is given', () => {
    const allocator = new McsAllocator({ range: range(0, 3) });
    expect(drain(allocator).sort()).toEqual(pairs(0, 3).sort());
  });

  it('reports a full range with the count in use', () => {
    const allocator = small();
    drain(allocator);
    expect(() => allocator.allocate('late')).toThrow(McsExhaustedError);
    expect(() => allocator.allocate('late')).toThrow('no free MCS pair in c0.c3 (6 in use)');
  });

  it('writes the sensitivity into the range when it is not s0', () => {
    const allocator = new McsAllocator({ range: { sensitivity: 2, first: 0, last: 1 }, random: seededInt(1) });
    expect(text(allocator.allocate('a'))).toBe('s2:c0,c1');
    expect(() => allocator.allocate('b')).toThrow('no free MCS pair in s2:c0,c1 (1 in use)');
  });

  it('refuses a second pair for one owner and a bad random source', () => {
    const allocator = small();
    const first = allocator.allocate('vm1');
    expect(() => allocator.allocate('vm1')).toThrow(`vm1 already holds ${text(first)}`);
    expect(() => allocator.allocate('')).toThrow(/owner/);
    const broken = new McsAllocator({ range: range(0, 3), random: (n) => n });
    expect(() => broken.allocate('vm')).toThrow('random(6) returned 6, outside [0, 6)');
  });

  it.each([
    [{ sensitivity: 0, first: 3, last: 3 }, /at least two categories/],
    [{ sensitivity: 0, first: 0, last: 5000 }, /wider than 4096/],
    [{ sensitivity: -1, first: 0, last: 3 }, /sensitivity/],
    [{ sensitivity: 0, first: 0.5, last: 3 }, /non-negative integers/],
  ])('rejects the range %j', (bad, message) => {
    expect(() => new McsAllocator({ range: bad })).toThrow(message);
  });
});

describe('every pair reachable, uniform over the free ones', () => {
  it('reaches each free pair for each k in [0, free)', () => {
    const reached = new Set<string>();
    for (let k = 0; k < 6; k++) {
      const allocator = new McsAllocator({ range: range(0, 3), random: () => k });
      reached.add(text(allocator.allocate('vm')));
    }
    expect([...reached].sort()).toEqual(pairs(0, 3).sort());
  });

  it('reaches every pair of a fresh allocator of any width, one pair for each k', () => {
    for (const last of [1, 2, 3, 4, 5, 7, 8, 12, 16, 17, 40]) {
      const reached = new Set<string>();
      const count = ((last + 1) * last) / 2;
      for (let k = 0; k < count; k++) reached.add(text(new McsAllocator({ range: range(0, last), random: () => k }).allocate('vm')));
      expect(reached.size).toBe(count);
    }
  });

  it('draws uniformly among the free pairs and never a held or blocked one (chi-square)', () => {
    const allocator = new McsAllocator({ range: range(0, 4), random: seededInt(2024) });
    allocator.reserve('s0:c0,c1', 'held');
    allocator.setExternalInUse([{ range: 's0:c3,c4', kind: 'subject', owner: 'static vm' }]);
    const free = pairs(0, 4).filter((p) => p !== 's0:c0,c1' && p !== 's0:c3,c4');
    expect(allocator.freeCount()).toBe(free.length);
    const counts = new Map<string, number>();
    const draws = 80_000;
    for (let i = 0; i < draws; i++) {
      const level = text(allocator.allocate('probe'));
      counts.set(level, (counts.get(level) ?? 0) + 1);
      allocator.release('probe');
    }
    expect([...counts.keys()].sort()).toEqual([...free].sort());
    const expected = draws / free.length;
    const chiSquare = [...counts.values()].reduce((sum, observed) => sum + (observed - expected) ** 2 / expected, 0);
    // 7 degrees of freedom: 24.32 is the 0.001 critical value.
    expect(chiSquare).toBeLessThan(24.32);
  });

  it('hands out all 523,776 pairs of c0.c1023 exactly once, then reports the range full', () => {
    const allocator = new McsAllocator({ range: DEFAULT_CATEGORY_RANGE, random: seededInt(99) });
    const seen = new Uint8Array(1024 * 1024);
    let duplicates = 0;
    let misordered = 0;
    for (let i = 0; i < 523_776; i++) {
      const [a, b] = allocator.allocate(`vm${i}`).categories as [number, number];
      if (!(a < b)) misordered++;
      const slot = a * 1024 + b;
      if (seen[slot] === 1) duplicates++;
      seen[slot] = 1;
    }
    expect(duplicates).toBe(0);
    expect(misordered).toBe(0);
    expect(allocator.freeCount()).toBe(0);
    expect(() => allocator.allocate('one more')).toThrow('no free MCS pair in c0.c1023 (523,776 in use)');
    // The last pair released is the one handed out next.
    const last = allocator.pairOf('vm1000') as Level;
    allocator.release('vm1000');
    expect(allocator.allocate('again')).toEqual(last);
  }, 60_000);
});

describe('host-wide uniqueness and isolation', () => {
  it('never returns a pair held by the registry, a static VM, or another program', () => {
    const allocator = new McsAllocator({ range: range(0, 5), random: seededInt(3) });
    allocator.reserve('s0:c0,c1', 'running vm');
    allocator.setExternalInUse([
      // A static VM contributes its process range and its image level.
      { range: 's0:c2,c3', kind: 'subject', owner: 'static vm' },
      { range: 's0:c2,c3', kind: 'object', owner: 'static vm images' },
      { range: 's0:c4,c5', kind: 'subject', owner: 'podman container' },
    ]);
    expect(allocator.freeCount()).toBe(15 - 3);
    const got = drain(allocator);
    expect(got).not.toContain('s0:c0,c1');
    expect(got).not.toContain('s0:c2,c3');
    expect(got).not.toContain('s0:c4,c5');
    expect(got).toHaveLength(12);
  });

  it('blocks every pair a confined subject dominates: s0:c1,c2,c3 could read s0:c1,c2 images', () => {
    const allocator = small();
    allocator.setExternalInUse([{ range: 's0:c1,c2,c3', kind: 'subject', owner: 'static vm' }]);
    expect(drain(allocator).sort()).toEqual(['s0:c0,c1', 's0:c0,c2', 's0:c0,c3']);
  });

  it('uses the high level of a subject range for what it can read', () => {
    const allocator = small();
    allocator.setExternalInUse([{ range: 's0-s0:c1,c2,c3', kind: 'subject', owner: 'ranged' }]);
    expect(allocator.freeCount()).toBe(3);
  });

  it('blocks every pair that dominates an object: images at s0:c5 are readable by any pair with c5', () => {
    const allocator = new McsAllocator({ range: range(0, 9), random: seededInt(4) });
    allocator.setExternalInUse([{ range: 's0:c5', kind: 'object', owner: 'static vm images' }]);
    expect(allocator.freeCount()).toBe(45 - 9);
    for (const level of drain(allocator)) expect(parseLevel(level).categories).not.toContain(5);
  });

  it('treats a subject as an object at its low level too (the files it creates)', () => {
    const allocator = new McsAllocator({ range: range(0, 9), random: seededInt(5) });
    allocator.setExternalInUse([{ range: 's0:c5', kind: 'subject', owner: 'single-category container' }]);
    expect(allocator.freeCount()).toBe(45 - 9);
  });

  it('does not block for plain s0 objects, objects of three or more categories, or categories outside the range', () => {
    const allocator = small();
    allocator.setExternalInUse([
      { range: 's0', kind: 'object', owner: 'shared disk' },
      { range: 's0:c0,c1,c2', kind: 'object', owner: 'wide object' },
      { range: 's0:c7', kind: 'object', owner: 'outside' },
      { range: 's0:c2,c9', kind: 'object', owner: 'half outside' },
      { range: 's0-s0:c0,c9', kind: 'subject', owner: 'one category inside' },
    ]);
    expect(allocator.freeCount()).toBe(6);
  });

  it('ignores unconfined entries and refuses a whole-range subject unless told it is confined', () => {
    const allocator = new McsAllocator({ range: DEFAULT_CATEGORY_RANGE, random: seededInt(6) });
    const unconfined = { range: 's0-s0:c0.c1023', owner: 'pid 1 (systemd)' };
    allocator.setExternalInUse([{ ...unconfined, kind: 'unconfined' }]);
    expect(allocator.freeCount()).toBe(523_776);
    expect(() => allocator.setExternalInUse([{ ...unconfined, kind: 'subject' }])).toThrow(InUseEntryError);
    expect(() => allocator.setExternalInUse([{ ...unconfined, kind: 'subject' }])).toThrow(/pass kind 'unconfined'/);
    allocator.setExternalInUse([{ ...unconfined, kind: 'subject', fullRangeIsConfined: true }]);
    expect(allocator.freeCount()).toBe(0);
    expect(() => allocator.allocate('vm')).toThrow(
      'no free MCS pair in c0.c1023: all 523,776 blocked; s0:c0.c1023 held by pid 1 (systemd) dominates every pair',
    );
  });

  it('names the widest blocker when several together fill the range', () => {
    const allocator = small();
    allocator.reserve('s0:c0,c1', 'mine');
    allocator.setExternalInUse([
      { range: 's0:c1,c2,c3', kind: 'subject', owner: 'static a' },
      { range: 's0:c0,c2', kind: 'subject', owner: 'static b' },
      { range: 's0:c0,c3', kind: 'object', owner: 'image c' },
    ]);
    expect(() => allocator.allocate('vm')).toThrow(
      'no free MCS pair in c0.c3: all 6 blocked; 1 held by this app, the rest by host-wide levels, most of all s0:c1.c3 held by static a, which dominates 3 pairs',
    );
  });

  it('replaces the external set as a whole and frees what left it', () => {
    const allocator = small();
    allocator.setExternalInUse([
      { range: 's0:c1', kind: 'object', owner: 'a' },
      { range: 's0:c1', kind: 'object', owner: 'b' },
    ]);
    expect(allocator.freeCount()).toBe(3);
    allocator.setExternalInUse([{ range: 's0:c1', kind: 'object', owner: 'b' }, { range: 's0:c2,c3', kind: 'subject', owner: 'c' }]);
    expect(allocator.freeCount()).toBe(2);
    allocator.setExternalInUse([]);
    expect(allocator.freeCount()).toBe(6);
  });

  it('validates every entry before changing anything', () => {
    const allocator = small();
    allocator.setExternalInUse([{ range: 's0:c1,c2', kind: 'subject', owner: 'a' }]);
    const bad: InUseEntry[] = [
      { range: 's0:c0,c3', kind: 'subject', owner: 'b' },
      { range: 's0:c9.c2', kind: 'object', owner: 'typo' },
    ];
    expect(() => allocator.setExternalInUse(bad)).toThrow('in-use entry 1 (typo): invalid categories in "s0:c9.c2": range "c9.c2" runs backwards');
    expect(allocator.freeCount()).toBe(5);
    expect(() => allocator.setExternalInUse([{ range: 's0', kind: 'process' as 'subject', owner: 'x' }])).toThrow(/kind must be/);
    expect(() => allocator.setExternalInUse([{ range: 's0', kind: 'object', owner: '' }])).toThrow(/owner/);
    expect(() => allocator.setExternalInUse([{ range: parseRange('s0:c1,c3'), kind: 'object', owner: 'parsed' }])).not.toThrow();
    expect(allocator.freeCount()).toBe(5);
  });
});

describe('reserve and release', () => {
  it('reserves a running VM pair, idempotently, and never hands it out', () => {
    const allocator = small();
    expect(text(allocator.reserve('s0:c2,c1', 'vm1').level)).toBe('s0:c1,c2');
    expect(allocator.reserve('s0:c1,c2', 'vm1').isolationConflicts).toEqual([]);
    expect(allocator.inUseCount()).toBe(1);
    expect(drain(allocator, 'new')).not.toContain('s0:c1,c2');
    expect(allocator.ownerOf('s0:c1,c2')).toBe('vm1');
  });

  it('refuses a pair held by another owner, and a second pair for one owner', () => {
    const allocator = small();
    allocator.reserve('s0:c1,c2', 'vm1');
    expect(() => allocator.reserve('s0:c1,c2', 'vm2')).toThrow(McsConflictError);
    expect(() => allocator.reserve('s0:c1,c2', 'vm2')).toThrow('s0:c1,c2 is held by vm1, cannot reserve it for vm2');
    expect(() => allocator.reserve('s0:c0,c3', 'vm1')).toThrow('vm1 already holds s0:c1,c2, cannot also reserve s0:c0,c3');
  });

  it.each([
    ['s0:c1', /not an MCS pair in c0.c3/],
    ['s0:c1,c2,c3', /not an MCS pair/],
    ['s0:c3,c4', /not an MCS pair/],
    ['s1:c1,c2', /not an MCS pair/],
    ['s0:c1,,c2', /stray comma/],
  ])('refuses to reserve %s', (level, message) => {
    expect(() => small().reserve(level, 'vm')).toThrow(message);
    expect(() => small().reserve(level, 'vm')).toThrow(McsAllocatorError);
  });

  it('reports host-wide levels that reach a reserved pair, but not the pair\'s own labels', () => {
    const allocator = small();
    allocator.setExternalInUse([
      { range: 's0:c1,c2', kind: 'subject', owner: 'vm1 qemu seen on the host' },
      { range: 's0:c0,c1,c2', kind: 'subject', owner: 'static wide' },
      { range: 's0:c2', kind: 'object', owner: 'image' },
    ]);
    expect(allocator.reserve('s0:c1,c2', 'vm1').isolationConflicts).toEqual([
      's0:c0.c2 of static wide dominates it',
      's0:c2 of image is dominated by it',
    ]);
  });

  it('releases by owner or by pair and says whether anything was held', () => {
    const allocator = small();
    const level = allocator.allocate('vm1');
    allocator.allocate('vm2');
    expect(allocator.release('vm1')).toBe(true);
    expect(allocator.release('vm1')).toBe(false);
    expect(allocator.pairOf('vm1')).toBeUndefined();
    const other = allocator.pairOf('vm2') as Level;
    expect(allocator.release(other)).toBe(true);
    expect(allocator.release(text(level))).toBe(false);
    expect(allocator.release('not a level')).toBe(false);
    expect(allocator.freeCount()).toBe(6);
  });

  it('keeps its books through many owners coming and going', () => {
    const allocator = new McsAllocator({ range: range(0, 63), random: seededInt(12) });
    for (let i = 0; i < 5000; i++) {
      allocator.allocate(`short-lived ${i}`);
      if (i % 3 !== 0) expect(allocator.release(`short-lived ${i}`)).toBe(true);
      else allocator.release(`short-lived ${i - 3}`);
    }
    expect(allocator.inUseCount()).toBe(1);
    expect(allocator.toJSON().holds.map((h) => h.owner)).toEqual(['short-lived 4998']);
    expect(allocator.freeCount()).toBe(allocator.pairCount - 1);
    expect(allocator.pairOf('short-lived 0')).toBeUndefined();
    allocator.allocate('short-lived 0');
    expect(allocator.inUseCount()).toBe(2);
  });

  it('keeps a pair blocked by the host after the registry releases it', () => {
    const allocator = small();
    allocator.reserve('s0:c1,c2', 'vm1');
    allocator.setExternalInUse([{ range: 's0:c1,c2', kind: 'subject', owner: 'vm1 qemu still running' }]);
    allocator.release('vm1');
    expect(allocator.freeCount()).toBe(5);
    allocator.setExternalInUse([]);
    expect(allocator.freeCount()).toBe(6);
  });
});

describe('persistence', () => {
  it('round-trips the registry through JSON, without the host-wide levels', () => {
    const allocator = new McsAllocator({ range: range(0, 9), random: seededInt(8) });
    allocator.allocate('b');
    allocator.allocate('a');
    allocator.setExternalInUse([{ range: 's0:c5', kind: 'object', owner: 'x' }]);
    const saved = JSON.stringify(allocator);
    const parsed = JSON.parse(saved) as { holds: { owner: string }[] };
    expect(parsed.holds.map((h) => h.owner)).toEqual(['a', 'b']);
    const restored = McsAllocator.fromJSON(saved, { random: seededInt(9) });
    expect(restored.toJSON()).toEqual(allocator.toJSON());
    expect(restored.freeCount()).toBe(43);
    expect(McsAllocator.fromJSON(JSON.parse(saved)).pairOf('a')).toEqual(allocator.pairOf('a'));
  });

  it('lists the owners of a saved state without building it, and nothing for what fromJSON would refuse', () => {
    const allocator = new McsAllocator({ range: range(0, 9), random: seededInt(8) });
    allocator.allocate('b');
    allocator.allocate('a');
    expect(McsAllocator.savedOwners(allocator.toJSON())).toEqual(['a', 'b']);
    expect(McsAllocator.savedOwners(JSON.parse(JSON.stringify(allocator)))).toEqual(['a', 'b']);
    expect(McsAllocator.savedOwners(new McsAllocator({ range: range(0, 9) }).toJSON())).toEqual([]);
    for (const bad of [null, undefined, '{}', [], { holds: {} }, { holds: [null] }, { holds: [{ owner: 5 }] }]) {
      expect(McsAllocator.savedOwners(bad)).toBeUndefined();
    }
  });

  it.each([
    ['{', /not JSON/],
    [[], /expected an object/],
    [{ version: 2, range: range(0, 3), holds: [] }, /unsupported version 2/],
    [{ version: 1, range: { sensitivity: 0, first: 3, last: 1 }, holds: [] }, /range: c3.c1 must hold at least two/],
    [{ version: 1, range: 'c0.c3', holds: [] }, /range: expected \{ sensitivity, first, last \}/],
    [{ version: 1, range: range(0, 3), holds: {} }, /holds must be an array/],
    [{ version: 1, range: range(0, 3), holds: [{ owner: '', level: 's0:c0,c1' }] }, /holds\[0\].owner/],
    [{ version: 1, range: range(0, 3), holds: [{ owner: 'a', level: 5 }] }, /holds\[0\].level/],
    [{ version: 1, range: range(0, 3), holds: [null] }, /holds\[0\].owner/],
    [{ version: 1, range: range(0, 3), holds: [{ owner: 'a', level: 's0:c0,c9' }] }, /holds\[0\]: s0:c0,c9 is not an MCS pair in c0.c3/],
    [{ version: 1, range: range(0, 3), holds: [{ owner: 'a', level: 's0:c0,c1' }, { owner: 'b', level: 's0:c0,c1' }] }, /holds\[1\]: s0:c0,c1 is held by a/],
    [{ version: 1, range: range(0, 3), holds: [{ owner: 'a', level: 's0:c0,c1' }, { owner: 'a', level: 's0:c0,c2' }] }, /holds\[1\]: a already holds/],
  ])('refuses malformed state %j', (state, message) => {
    expect(() => McsAllocator.fromJSON(state)).toThrow(McsStateError);
    expect(() => McsAllocator.fromJSON(state)).toThrow(message);
  });
});

describe('agrees with a brute-force model of the MCS constraint', () => {
  // Random operations on c0.c5; after each, the free set must equal the pairs that are neither held
  // nor reached by dominance from a confined level, computed directly with context.ts' dominates().
  const level = fc.uniqueArray(fc.integer({ min: 0, max: 7 }), { maxLength: 4 }).map((cats) => `s0${cats.length ? `:${cats.map((c) => `c${c}`).join(',')}` : ''}`);
  const entry = fc.record({ low: level, kind: fc.constantFrom('subject' as const, 'object' as const), owner: fc.constantFrom('p', 'q', 'r') });
  const op = fc.oneof(
    fc.record({ op: fc.constant('allocate' as const), owner: fc.constantFrom('a', 'b', 'c', 'd') }),
    fc.record({ op: fc.constant('release' as const), owner: fc.constantFrom('a', 'b', 'c', 'd') }),
    fc.record({ op: fc.constant('external' as const), entries: fc.array(entry, { maxLength: 4 }) }),
  );

  // Dense from the start, sparse turning dense past 3 taken pairs, and sparse throughout (15 pairs here).
  it.each([['dense', 0], ['sparse, then dense', 3], ['sparse', undefined]] as const)('keeps exactly the isolated pairs free (%s)', (_form, sparseLimit) => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 25 }), fc.integer(), (ops, seed) => {
        const allocator = new McsAllocator({ range: range(0, 5), random: seededInt(seed), ...(sparseLimit === undefined ? {} : { sparseLimit }) });
        let external: InUseEntry[] = [];
        const held = new Map<string, Level>();
        for (const step of ops) {
          if (step.op === 'allocate') {
            if (held.has(step.owner) || allocator.freeCount() === 0) continue;
            held.set(step.owner, allocator.allocate(step.owner));
          } else if (step.op === 'release') {
            expect(allocator.release(step.owner)).toBe(held.delete(step.owner));
          } else {
            external = step.entries.map((e) => ({ range: e.low, kind: e.kind, owner: e.owner }));
            allocator.setExternalInUse(external);
          }
          const expectedFree = pairs(0, 5).filter((p) => {
            const pair = parseLevel(p);
            if ([...held.values()].some((h) => formatLevel(h) === formatLevel(pair))) return false;
            return !external.some((e) => {
              const r = parseRange(e.range as string);
              const reachesPair = e.kind === 'subject' && dominates(r.high, pair);
              const objectLevel = e.kind === 'object' ? r.high : r.low;
              const pairReaches = objectLevel.categories.length > 0 && dominates(pair, objectLevel);
              return reachesPair || pairReaches;
            });
          });
          expect(allocator.freeCount()).toBe(expectedFree.length);
          for (const h of held.values()) expect(expectedFree).not.toContain(formatLevel(h));
        }
      }),
      { numRuns: 300 },
    );
  });

  it('draws the same pairs in sparse and dense form, for the same random numbers', () => {
    fc.assert(
      fc.property(fc.array(op, { maxLength: 40 }), fc.integer(), (ops, seed) => {
        const forms = [0, 2, 5, undefined].map((sparseLimit) => new McsAllocator({ range: range(0, 7), random: seededInt(seed), ...(sparseLimit === undefined ? {} : { sparseLimit }) }));
        for (const step of ops) {
          const results = forms.map((allocator) => {
            if (step.op === 'allocate') return allocator.pairOf(step.owner) || allocator.freeCount() === 0 ? null : formatLevel(allocator.allocate(step.owner));
            if (step.op === 'release') return allocator.release(step.owner);
            allocator.setExternalInUse(step.entries.map((e) => ({ range: e.low, kind: e.kind, owner: e.owner })));
            return allocator.freeCount();
          });
          expect(new Set(results.map((r) => JSON.stringify(r))).size).toBe(1);
          expect(new Set(forms.map((allocator) => JSON.stringify(allocator.toJSON()))).size).toBe(1);
        }
      }),
      { numRuns: 300 },
    );
  });
});
