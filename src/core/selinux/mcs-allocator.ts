/**
 * The MCS pair allocator: hands each dynamic VM a level `sN:cA,cB` (A < B) that no other confined
 * process or labelled object on the host can reach, drawing uniformly among the free pairs.
 *
 * libvirt and go-selinux redraw random pairs until one is free, which slows down as the range fills
 * and never returns once it is full; they also ignore static labels and other programs' processes.
 * Here every pair has a blocker count (its holder in this registry, plus every host-wide level that
 * reaches it), and a Fenwick tree over "count is zero" finds the k-th free pair in O(log N), so a draw
 * costs the same at any occupancy and a full range is an immediate, explained error.
 */
import { formatLevel, formatRange, levelEquals, parseLevel, parseRange, type Level, type MlsRange } from './context';
import type { CategoryRange } from './policy-profile';

/**
 * How a host-wide level is used. A confined process is a `subject` (it can open objects its clearance
 * dominates), a file or image label is an `object`. `unconfined` entries are accepted and ignored: an
 * unconfined process is not subject to the MCS constraint, so its range says nothing about isolation.
 */
export type InUseKind = 'subject' | 'object' | 'unconfined';

/** A level in use outside this allocator's registry: a static VM, a libvirt VM, a container, an image. */
export interface InUseEntry {
  readonly range: MlsRange | string;
  readonly kind: InUseKind;
  /** Who holds it, for error messages (e.g. `vm web1`, `pid 4242 (podman)`). */
  readonly owner: string;
  /**
   * A subject whose clearance covers the whole allocation range blocks every pair. That is almost always
   * an unconfined process mislabelled as a subject (`unconfined_t` runs at s0-s0:c0.c1023), so it is
   * refused unless this says the process really is MCS-constrained.
   */
  readonly fullRangeIsConfined?: boolean;
}

/** An integer in [0, n): `crypto.randomInt` fits; tests pass a seeded generator. */
export type RandomInt = (n: number) => number;

export interface McsAllocatorOptions {
  readonly range: CategoryRange;
  /** Defaults to Web Crypto (`globalThis.crypto.getRandomValues`), never Math.random. */
  readonly random?: RandomInt;
  /** Taken or held pairs kept in sparse form (SPARSE_PAIR_LIMIT); tests set it low or to 0 to run the dense form. */
  readonly sparseLimit?: number;
}

/** The registry as persisted: the range and who holds which pair. Host-wide levels are re-read, not stored. */
export interface McsAllocatorState {
  readonly version: 1;
  readonly range: CategoryRange;
  readonly holds: readonly { readonly owner: string; readonly level: string }[];
}

export class McsAllocatorError extends Error {
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}
/** Every pair is held or blocked. */
export class McsExhaustedError extends McsAllocatorError {}
/** A pair or an owner is already taken in the registry. */
export class McsConflictError extends McsAllocatorError {}
/** A host-wide in-use entry is malformed or looks unconfined. */
export class InUseEntryError extends McsAllocatorError {}
/** fromJSON was given something that is not a saved allocator state. */
export class McsStateError extends McsAllocatorError {}

// 4096 categories: 8,386,560 pairs, 64 MiB of counters and tree. Real policies have 1024.
const MAX_CATEGORIES = 4096;
const MAX_SENSITIVITY = 65535;

/**
 * Up to this many taken pairs (or held pairs), the allocator keeps them in small sorted lists and maps; past
 * it, in arrays over the whole range. A range of 1024 categories has 523,776 pairs, so the arrays are 2 MiB
 * each: the helper builds an allocator for every start and stop, and in its JIT-less Node those buffers cost
 * milliseconds each and bring on garbage collections, while a host has a handful of VMs and host levels.
 */
export const SPARSE_PAIR_LIMIT = 4096;

/** Index of the first element of ascending `sorted` that is >= value. */
function lowerBound(sorted: readonly number[], value: number): number {
  let lo = 0;
  let hi = sorted.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if ((sorted[mid] as number) < value) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

/**
 * Blocker counts per pair, and what answers "the k-th free pair":
 * - sparse (few taken pairs): a map of counts and the ascending list of taken pairs, walked in O(taken);
 * - dense: counts per pair and a Fenwick tree over the taken (count not zero) flags, answered by a single
 *   descent, a node's free pairs being its span (i & -i) less its taken ones.
 * It turns dense, once, when the taken pairs pass the sparse limit.
 */
class FreePairs {
  private dense: { readonly blockers: Uint32Array; readonly tree: Int32Array } | undefined;
  private readonly counts = new Map<number, number>();
  private readonly taken: number[] = [];
  private readonly topStep: number;
  private free: number;

  constructor(readonly size: number, private readonly sparseLimit: number) {
    this.topStep = size === 0 ? 0 : 2 ** Math.floor(Math.log2(size));
    this.free = size;
    if (sparseLimit <= 0) this.densify();
  }

  get freeCount(): number {
    return this.free;
  }

  isFree(pair: number): boolean {
    return this.dense === undefined ? !this.counts.has(pair) : this.dense.blockers[pair] === 0;
  }

  /**
   * Adds `delta` blockers to every pair `visit` names. In dense form, pairs whose freedom changes are
   * patched into the tree one by one; when that would touch a large share of the tree it is rebuilt in
   * O(N) instead.
   */
  adjust(visit: (each: (pair: number) => void) => void, delta: 1 | -1): void {
    const rebuildAbove = Math.max(64, this.size >>> 4);
    let changed: number[] | undefined = [];
    visit((pair) => {
      if (this.dense === undefined) {
        this.adjustSparse(pair, delta);
        return;
      }
      const { blockers } = this.dense;
      const before = blockers[pair] as number;
      if (delta < 0 && before === 0) throw new Error(`internal: pair ${pair} released more often than blocked`);
      blockers[pair] = before + delta;
      if (before === 0 || before + delta === 0) {
        this.free -= delta;
        if (changed !== undefined) {
          changed.push(pair);
          if (changed.length > rebuildAbove) changed = undefined;
        }
      }
    });
    // Pairs visited after a switch to dense form (densify builds the tree from the counts at that point).
    if (this.dense === undefined) return;
    if (changed === undefined) this.rebuild();
    else for (const pair of changed) this.add(pair + 1, delta);
  }

  /** adjust() for one pair, without the visitor: the hot path of allocate and release. */
  adjustOne(pair: number, delta: 1 | -1): void {
    if (this.dense === undefined) {
      this.adjustSparse(pair, delta);
      return;
    }
    const { blockers } = this.dense;
    const before = blockers[pair] as number;
    if (delta < 0 && before === 0) throw new Error(`internal: pair ${pair} released more often than blocked`);
    blockers[pair] = before + delta;
    if (before === 0 || before + delta === 0) {
      this.free -= delta;
      this.add(pair + 1, delta);
    }
  }

  /** The index of the k-th free pair, k in [0, freeCount). */
  kthFree(k: number): number {
    if (this.dense === undefined) {
      // Each taken pair at or before the candidate pushes the k-th free one a place further.
      let position = k;
      for (const pair of this.taken) {
        if (pair > position) break;
        position++;
      }
      return position;
    }
    const { tree } = this.dense;
    let position = 0;
    let remaining = k;
    for (let step = this.topStep; step > 0; step >>>= 1) {
      const next = position + step;
      if (next > this.size) continue;
      const free = (next & -next) - (tree[next] as number);
      if (free <= remaining) {
        position = next;
        remaining -= free;
      }
    }
    return position;
  }

  private adjustSparse(pair: number, delta: 1 | -1): void {
    const before = this.counts.get(pair) ?? 0;
    if (delta < 0 && before === 0) throw new Error(`internal: pair ${pair} released more often than blocked`);
    const after = before + delta;
    if (after === 0) {
      this.counts.delete(pair);
      this.taken.splice(lowerBound(this.taken, pair), 1);
      this.free++;
      return;
    }
    this.counts.set(pair, after);
    if (before !== 0) return;
    this.taken.splice(lowerBound(this.taken, pair), 0, pair);
    this.free--;
    if (this.taken.length > this.sparseLimit) this.densify();
  }

  /**
   * Counts as arrays over the whole range, zero-filled at allocation (a fresh buffer costs nothing until it
   * is written; filling one, even by native copies, costs milliseconds in the helper's JIT-less Node).
   */
  private densify(): void {
    const blockers = new Uint32Array(this.size);
    for (const [pair, count] of this.counts) blockers[pair] = count;
    this.dense = { blockers, tree: new Int32Array(this.size + 1) };
    this.counts.clear();
    this.taken.length = 0;
    this.rebuild();
  }

  private add(oneBased: number, delta: number): void {
    const tree = (this.dense as { tree: Int32Array }).tree;
    for (let i = oneBased; i <= this.size; i += i & -i) tree[i] = (tree[i] as number) + delta;
  }

  private rebuild(): void {
    const { tree, blockers } = this.dense as { tree: Int32Array; blockers: Uint32Array };
    const { size } = this;
    for (let i = 1; i <= size; i++) tree[i] = blockers[i - 1] === 0 ? 0 : 1;
    for (let i = 1; i <= size; i++) {
      const parent = i + (i & -i);
      if (parent <= size) tree[parent] = (tree[parent] as number) + (tree[i] as number);
    }
  }
}

/**
 * Who holds which pair: an owner slot per pair (0: free), in a map while few pairs are held and in a flat
 * typed array past the sparse limit. V8 Maps slow down badly under delete/insert churn once they hold a
 * few hundred thousand entries (rehashing in O(n) every few hundred operations), so a large registry uses
 * the array, and a release leaves a tombstone in the owner map, swept once tombstones outnumber live holds.
 */
class Holds {
  private slotByPair: Map<number, number> | Int32Array;
  /** Owner names by slot - 1; freed slots are reused. */
  private readonly owners: string[] = [];
  private readonly freeSlots: number[] = [];
  private pairByOwner = new Map<string, number>();
  private live = 0;
  private tombstones = 0;

  constructor(private readonly pairCount: number, private readonly sparseLimit: number) {
    this.slotByPair = sparseLimit <= 0 ? new Int32Array(pairCount) : new Map();
  }

  get size(): number {
    return this.live;
  }

  pairOf(owner: string): number | undefined {
    const pair = this.pairByOwner.get(owner);
    return pair === undefined || pair < 0 ? undefined : pair;
  }

  ownerOf(pair: number): string | undefined {
    const slot = this.slotOf(pair);
    return slot === 0 ? undefined : this.owners[slot - 1];
  }

  add(owner: string, pair: number): void {
    if (this.pairByOwner.get(owner) === -1) this.tombstones--;
    this.pairByOwner.set(owner, pair);
    let slot = this.freeSlots.pop();
    if (slot === undefined) {
      this.owners.push(owner);
      slot = this.owners.length;
    } else {
      this.owners[slot - 1] = owner;
    }
    this.setSlot(pair, slot);
    this.live++;
  }

  remove(pair: number): void {
    const slot = this.slotOf(pair);
    const owner = this.owners[slot - 1] as string;
    this.setSlot(pair, 0);
    this.owners[slot - 1] = '';
    this.freeSlots.push(slot);
    this.pairByOwner.set(owner, -1);
    this.live--;
    this.tombstones++;
    if (this.tombstones > 1024 && this.tombstones > this.live) {
      this.pairByOwner = new Map([...this.pairByOwner].filter(([, p]) => p >= 0));
      this.tombstones = 0;
    }
  }

  entries(): [string, number][] {
    return [...this.pairByOwner].filter(([, pair]) => pair >= 0);
  }

  private slotOf(pair: number): number {
    return (this.slotByPair instanceof Map ? this.slotByPair.get(pair) : this.slotByPair[pair]) ?? 0;
  }

  private setSlot(pair: number, slot: number): void {
    if (!(this.slotByPair instanceof Map)) {
      this.slotByPair[pair] = slot;
      return;
    }
    if (slot === 0) this.slotByPair.delete(pair);
    else this.slotByPair.set(pair, slot);
    if (this.slotByPair.size > this.sparseLimit) {
      const dense = new Int32Array(this.pairCount);
      for (const [p, s] of this.slotByPair) dense[p] = s;
      this.slotByPair = dense;
    }
  }
}

/**
 * A host-wide level and the rule by which it blocks pairs (the MCS constraint is `h1 dom h2`):
 * - `clearance`: a confined subject's high level H reads objects it dominates, so it blocks every pair
 *   P with H dom P, i.e. both categories of P in H.
 * - `object`: an object at level O is read by every subject dominating it, so it blocks every pair P
 *   with P dom O: O holds one category of P (all pairs containing it) or exactly P's two.
 */
interface Blocker {
  readonly rule: 'clearance' | 'object';
  readonly level: Level;
  /** Local category numbers (0-based within the allocation range) the rule applies to. */
  readonly local: readonly number[];
  readonly pairCount: number;
  readonly owners: string[];
}

function formatCount(n: number): string {
  return String(n).replace(/\B(?=(\d{3})+(?!\d))/g, ',');
}

function cryptoRandomInt(n: number): number {
  // Rejection sampling keeps the draw uniform where 2^32 is not a multiple of n.
  const limit = Math.floor(0x1_0000_0000 / n) * n;
  const word = new Uint32Array(1);
  for (;;) {
    globalThis.crypto.getRandomValues(word);
    const value = word[0] as number;
    if (value < limit) return value % n;
  }
}

function describeOwners(owners: readonly string[]): string {
  return owners.length <= 2 ? owners.join(' and ') : `${owners[0]} and ${owners.length - 1} others`;
}

function isInteger(value: unknown, min: number, max: number): value is number {
  return typeof value === 'number' && Number.isInteger(value) && value >= min && value <= max;
}

function validateCategoryRange(range: unknown, where: string, ErrorType: new (message: string) => Error): CategoryRange {
  const r = range as Partial<CategoryRange> | null;
  if (typeof r !== 'object' || r === null) throw new ErrorType(`${where}: expected { sensitivity, first, last }`);
  if (!isInteger(r.sensitivity, 0, MAX_SENSITIVITY)) throw new ErrorType(`${where}.sensitivity: expected an integer 0..${MAX_SENSITIVITY}`);
  if (!isInteger(r.first, 0, Number.MAX_SAFE_INTEGER) || !isInteger(r.last, 0, Number.MAX_SAFE_INTEGER)) {
    throw new ErrorType(`${where}: first and last must be non-negative integers`);
  }
  if (r.last <= r.first) throw new ErrorType(`${where}: c${r.first}.c${r.last} must hold at least two categories`);
  if (r.last - r.first + 1 > MAX_CATEGORIES) throw new ErrorType(`${where}: c${r.first}.c${r.last} is wider than ${MAX_CATEGORIES} categories`);
  return { sensitivity: r.sensitivity, first: r.first, last: r.last };
}

export class McsAllocator {
  readonly range: CategoryRange;
  /** Number of pairs in the range: n(n-1)/2 for n categories. */
  readonly pairCount: number;
  private readonly categoryCount: number;
  private readonly random: RandomInt;
  private readonly pairs: FreePairs;
  private readonly holds: Holds;
  private blockers = new Map<string, Blocker>();

  constructor(options: McsAllocatorOptions) {
    this.range = validateCategoryRange(options.range, 'range', McsAllocatorError);
    this.categoryCount = this.range.last - this.range.first + 1;
    this.pairCount = (this.categoryCount * (this.categoryCount - 1)) / 2;
    this.random = options.random ?? cryptoRandomInt;
    const sparseLimit = options.sparseLimit ?? SPARSE_PAIR_LIMIT;
    this.pairs = new FreePairs(this.pairCount, sparseLimit);
    this.holds = new Holds(this.pairCount, sparseLimit);
  }

  /** Pairs neither held in the registry nor reachable from a host-wide level. */
  freeCount(): number {
    return this.pairs.freeCount;
  }

  /** Pairs held in this registry. */
  inUseCount(): number {
    return this.holds.size;
  }

  pairOf(owner: string): Level | undefined {
    const pair = this.holds.pairOf(owner);
    return pair === undefined ? undefined : this.levelOf(pair);
  }

  ownerOf(level: Level | string): string | undefined {
    const pair = this.tryPairIndex(level);
    return pair === undefined ? undefined : this.holds.ownerOf(pair);
  }

  /** Draws a pair uniformly among the free ones and records it for `owner`. */
  allocate(owner: string): Level {
    this.checkOwner(owner);
    const held = this.holds.pairOf(owner);
    if (held !== undefined) throw new McsConflictError(`${owner} already holds ${formatLevel(this.levelOf(held))}; release it first`);
    const free = this.pairs.freeCount;
    if (free === 0) throw new McsExhaustedError(this.exhaustedMessage());
    const k = this.random(free);
    if (!Number.isInteger(k) || k < 0 || k >= free) throw new McsAllocatorError(`random(${free}) returned ${k}, outside [0, ${free})`);
    const pair = this.pairs.kthFree(k);
    this.hold(pair, owner);
    return this.levelOf(pair);
  }

  /**
   * Records a pair already in use by `owner` (a running VM found after a restart). Fails when another
   * owner holds it or `owner` holds another pair; reserving the same pair again is a no-op. Returns the
   * host-wide levels that reach the pair: the VM runs either way, so they are reported, not refused.
   */
  reserve(level: Level | string, owner: string): { readonly level: Level; readonly isolationConflicts: readonly string[] } {
    this.checkOwner(owner);
    const pair = this.pairIndex(level);
    const canonical = this.levelOf(pair);
    const heldByOwner = this.holds.pairOf(owner);
    const holder = this.holds.ownerOf(pair);
    if (heldByOwner !== pair) {
      if (heldByOwner !== undefined) throw new McsConflictError(`${owner} already holds ${formatLevel(this.levelOf(heldByOwner))}, cannot also reserve ${formatLevel(canonical)}`);
      if (holder !== undefined) throw new McsConflictError(`${formatLevel(canonical)} is held by ${holder}, cannot reserve it for ${owner}`);
      this.hold(pair, owner);
    }
    return { level: canonical, isolationConflicts: this.isolationConflicts(canonical) };
  }

  /**
   * Host-wide levels (other than the pair itself) that reach `level`. A host label equal to the pair is
   * taken to be the holder's own process or image, which the caller's host scan also finds.
   */
  isolationConflicts(level: Level | string): string[] {
    const pair = this.pairIndex(level);
    const [a, b] = this.localPair(pair);
    const canonical = this.levelOf(pair);
    const found: string[] = [];
    for (const blocker of this.blockers.values()) {
      if (levelEquals(blocker.level, canonical) || !this.blocks(blocker, a, b)) continue;
      const how = blocker.rule === 'clearance' ? 'dominates it' : 'is dominated by it';
      found.push(`${formatLevel(blocker.level)} of ${describeOwners(blocker.owners)} ${how}`);
    }
    return found;
  }

  /** Releases by owner, or by pair when no owner has that name. Returns whether anything was held. */
  release(ownerOrLevel: string | Level): boolean {
    let pair = typeof ownerOrLevel === 'string' ? this.holds.pairOf(ownerOrLevel) : undefined;
    if (pair === undefined) {
      const byLevel = this.tryPairIndex(ownerOrLevel);
      if (byLevel === undefined || this.holds.ownerOf(byLevel) === undefined) return false;
      pair = byLevel;
    }
    this.holds.remove(pair);
    this.pairs.adjustOne(pair, -1);
    return true;
  }

  /**
   * Replaces the set of host-wide levels in use. Everything is validated before anything changes; only
   * levels that appear or disappear touch the pair state.
   */
  setExternalInUse(entries: readonly InUseEntry[]): void {
    const next = new Map<string, Blocker>();
    entries.forEach((entry, index) => {
      for (const blocker of this.blockersOf(entry, index)) {
        const key = `${blocker.rule} ${formatLevel(blocker.level)}`;
        const same = next.get(key);
        if (same === undefined) next.set(key, blocker);
        else if (!same.owners.includes(entry.owner)) same.owners.push(entry.owner);
      }
    });
    for (const [key, blocker] of this.blockers) {
      if (!next.has(key)) this.pairs.adjust((each) => this.visitBlocked(blocker, each), -1);
    }
    for (const [key, blocker] of next) {
      if (!this.blockers.has(key)) this.pairs.adjust((each) => this.visitBlocked(blocker, each), 1);
    }
    this.blockers = next;
  }

  toJSON(): McsAllocatorState {
    const holds = this.holds
      .entries()
      .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))
      .map(([owner, pair]) => ({ owner, level: formatLevel(this.levelOf(pair)) }));
    return { version: 1, range: { ...this.range }, holds };
  }

  /** Rebuilds a registry saved by toJSON (as an object or JSON text); anything malformed is refused. */
  static fromJSON(saved: unknown, options: Pick<McsAllocatorOptions, 'random' | 'sparseLimit'> = {}): McsAllocator {
    let state: unknown = saved;
    if (typeof saved === 'string') {
      try {
        state = JSON.parse(saved);
      } catch (e) {
        throw new McsStateError(`MCS allocator state is not JSON: ${(e as Error).message}`);
      }
    }
    if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new McsStateError('MCS allocator state: expected an object');
    const { version, range, holds } = state as Record<string, unknown>;
    if (version !== 1) throw new McsStateError(`MCS allocator state: unsupported version ${JSON.stringify(version)} (expected 1)`);
    const allocator = new McsAllocator({ range: validateCategoryRange(range, 'MCS allocator state: range', McsStateError), ...options });
    if (!Array.isArray(holds)) throw new McsStateError('MCS allocator state: holds must be an array');
    holds.forEach((hold: unknown, i) => {
      const where = `MCS allocator state: holds[${i}]`;
      const { owner, level } = (typeof hold === 'object' && hold !== null ? hold : {}) as Record<string, unknown>;
      if (typeof owner !== 'string' || owner === '') throw new McsStateError(`${where}.owner: expected a non-empty string`);
      if (typeof level !== 'string') throw new McsStateError(`${where}.level: expected a level such as s0:c1,c2`);
      try {
        allocator.reserve(level, owner);
      } catch (e) {
        if (e instanceof McsAllocatorError) throw new McsStateError(`${where}: ${e.message}`);
        throw e;
      }
    });
    return allocator;
  }

  /**
   * The owners a saved state lists, read without building an allocator (which costs a pass over every pair
   * of the range); undefined when `saved` does not have a saved state's shape (fromJSON says what is wrong).
   */
  static savedOwners(saved: unknown): string[] | undefined {
    const holds = typeof saved === 'object' && saved !== null ? (saved as { holds?: unknown }).holds : undefined;
    if (!Array.isArray(holds)) return undefined;
    const owners = holds.map((hold: unknown) => (typeof hold === 'object' && hold !== null ? (hold as { owner?: unknown }).owner : undefined));
    return owners.every((owner): owner is string => typeof owner === 'string') ? owners : undefined;
  }

  // Pairs are numbered column by column of the upper triangle: local categories i < j give
  // j(j-1)/2 + i, so 0..N-1 covers every pair exactly once.
  private indexOf(i: number, j: number): number {
    return (j * (j - 1)) / 2 + i;
  }

  private localPair(pair: number): [number, number] {
    let j = Math.floor((1 + Math.sqrt(1 + 8 * pair)) / 2);
    // Correct a floating-point miss at the triangle's edges.
    while ((j * (j - 1)) / 2 > pair) j--;
    while (((j + 1) * j) / 2 <= pair) j++;
    return [pair - (j * (j - 1)) / 2, j];
  }

  private levelOf(pair: number): Level {
    const [i, j] = this.localPair(pair);
    return { sensitivity: this.range.sensitivity, categories: [this.range.first + i, this.range.first + j] };
  }

  private rangeText(): string {
    // Written as the kernel writes it: two neighbours are listed, a longer run is a span.
    const { first, last } = this.range;
    const cats = last === first + 1 ? `c${first},c${last}` : `c${first}.c${last}`;
    return this.range.sensitivity === 0 ? cats : `s${this.range.sensitivity}:${cats}`;
  }

  private pairIndex(level: Level | string): number {
    let parsed: Level;
    try {
      parsed = typeof level === 'string' ? parseLevel(level) : parseLevel(formatLevel(level));
    } catch (e) {
      throw new McsAllocatorError((e as Error).message);
    }
    const [a, b] = parsed.categories;
    const { first, last, sensitivity } = this.range;
    if (parsed.sensitivity !== sensitivity || parsed.categories.length !== 2 || a === undefined || b === undefined || a < first || b > last) {
      throw new McsAllocatorError(`${formatLevel(parsed)} is not an MCS pair in ${this.rangeText()} (expected s${sensitivity}:cA,cB with A < B)`);
    }
    return this.indexOf(a - first, b - first);
  }

  private tryPairIndex(level: Level | string): number | undefined {
    try {
      return this.pairIndex(level);
    } catch (e) {
      if (e instanceof McsAllocatorError) return undefined;
      throw e;
    }
  }

  private checkOwner(owner: string): void {
    if (typeof owner !== 'string' || owner === '') throw new McsAllocatorError('owner must be a non-empty string');
  }

  private hold(pair: number, owner: string): void {
    this.holds.add(owner, pair);
    this.pairs.adjustOne(pair, 1);
  }

  private blockersOf(entry: InUseEntry, index: number): Blocker[] {
    const where = `in-use entry ${index}${typeof entry?.owner === 'string' ? ` (${entry.owner})` : ''}`;
    if (typeof entry !== 'object' || entry === null) throw new InUseEntryError(`${where}: expected { range, kind, owner }`);
    if (typeof entry.owner !== 'string' || entry.owner === '') throw new InUseEntryError(`${where}: owner must be a non-empty string`);
    if (entry.kind !== 'subject' && entry.kind !== 'object' && entry.kind !== 'unconfined') {
      throw new InUseEntryError(`${where}: kind must be 'subject', 'object' or 'unconfined', not ${JSON.stringify(entry.kind)}`);
    }
    let range: MlsRange;
    try {
      range = parseRange(typeof entry.range === 'string' ? entry.range : formatRange(entry.range));
    } catch (e) {
      throw new InUseEntryError(`${where}: ${(e as Error).message}`);
    }
    if (entry.kind === 'unconfined') return [];

    const found: Blocker[] = [];
    const addObject = (level: Level): void => {
      const blocker = this.objectBlocker(level, entry.owner);
      if (blocker !== undefined) found.push(blocker);
    };
    if (entry.kind === 'object') {
      // The constraint compares the object's high level.
      addObject(range.high);
      return found;
    }
    const clearance = this.clearanceBlocker(range.high, entry.owner);
    if (clearance !== undefined) {
      if (clearance.pairCount === this.pairCount && entry.fullRangeIsConfined !== true) {
        throw new InUseEntryError(
          `${where}: subject ${formatRange(range)} covers all of ${this.rangeText()}, which is what an unconfined process ` +
            `(e.g. unconfined_t at s0-s0:c0.c1023) looks like; pass kind 'unconfined' for it, or fullRangeIsConfined: true ` +
            'if it really is MCS-constrained (it then blocks every pair)',
        );
      }
      found.push(clearance);
    }
    // The files a subject creates carry its low level, so it also counts as an object there.
    addObject(range.low);
    return found;
  }

  private clearanceBlocker(level: Level, owner: string): Blocker | undefined {
    if (level.sensitivity < this.range.sensitivity) return undefined;
    const local = this.localCategories(level);
    if (local.length < 2) return undefined;
    return { rule: 'clearance', level, local, pairCount: (local.length * (local.length - 1)) / 2, owners: [owner] };
  }

  private objectBlocker(level: Level, owner: string): Blocker | undefined {
    // A level without categories (plain s0) is the shared label every VM may read by design; a pair
    // cannot dominate three or more categories, nor any outside the range.
    const cats = level.categories.length;
    if (level.sensitivity > this.range.sensitivity || cats === 0 || cats > 2) return undefined;
    const local = this.localCategories(level);
    if (local.length !== cats) return undefined;
    return { rule: 'object', level, local, pairCount: cats === 1 ? this.categoryCount - 1 : 1, owners: [owner] };
  }

  private localCategories(level: Level): number[] {
    const { first, last } = this.range;
    return level.categories.filter((c) => c >= first && c <= last).map((c) => c - first);
  }

  private visitBlocked(blocker: Blocker, each: (pair: number) => void): void {
    const local = blocker.local;
    if (blocker.rule === 'clearance') {
      for (let y = 1; y < local.length; y++) {
        for (let x = 0; x < y; x++) each(this.indexOf(local[x] as number, local[y] as number));
      }
    } else if (local.length === 2) {
      each(this.indexOf(local[0] as number, local[1] as number));
    } else {
      const c = local[0] as number;
      for (let other = 0; other < this.categoryCount; other++) {
        if (other !== c) each(other < c ? this.indexOf(other, c) : this.indexOf(c, other));
      }
    }
  }

  private blocks(blocker: Blocker, a: number, b: number): boolean {
    const local = blocker.local;
    if (blocker.rule === 'clearance') return local.includes(a) && local.includes(b);
    return local.every((c) => c === a || c === b);
  }

  private exhaustedMessage(): string {
    const head = `no free MCS pair in ${this.rangeText()}`;
    const total = formatCount(this.pairCount);
    let widest: Blocker | undefined;
    for (const blocker of this.blockers.values()) {
      if (widest === undefined || blocker.pairCount > widest.pairCount) widest = blocker;
    }
    // The registry alone, or with exact pairs only: the range is simply full.
    if (this.inUseCount() === this.pairCount || widest === undefined || widest.pairCount <= 1) return `${head} (${total} in use)`;
    const level = formatLevel(widest.level);
    const owners = describeOwners(widest.owners);
    if (widest.pairCount === this.pairCount) {
      const why = widest.rule === 'clearance' ? `${level} held by ${owners} dominates every pair` : `every pair dominates ${level} held by ${owners}`;
      return `${head}: all ${total} blocked; ${why}`;
    }
    const how = widest.rule === 'clearance' ? 'dominates' : 'is dominated by';
    return (
      `${head}: all ${total} blocked; ${formatCount(this.inUseCount())} held by this app, the rest by host-wide levels, ` +
      `most of all ${level} held by ${owners}, which ${how} ${formatCount(widest.pairCount)} pairs`
    );
  }
}
