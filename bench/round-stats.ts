// What every bench reports for its goal metric: the median over its rounds (the goal is judged on it, so
// one lucky or unlucky round on a shared machine decides nothing), the worst round beside it, and how many
// rounds there were. Each bench measures its baseline in the same process, interleaved with its own rounds.

export const median = (xs: readonly number[]): number => {
  if (xs.length === 0) throw new Error('median of no rounds');
  const s = [...xs].sort((a, b) => a - b);
  const mid = Math.floor(s.length / 2);
  return s.length % 2 === 1 ? (s[mid] as number) : ((s[mid - 1] as number) + (s[mid] as number)) / 2;
};

export interface RoundStats {
  median: number;
  /** The round furthest from the goal: the largest value where lower is better, else the smallest. */
  worst: number;
  rounds: number;
}

/** Median, worst round and count of per-round values; `better` says which direction meets the goal. */
export function roundStats(values: readonly number[], better: 'lower' | 'higher', digits = 3): RoundStats {
  const scale = 10 ** digits;
  const round = (n: number): number => Math.round(n * scale) / scale;
  return {
    median: round(median(values)),
    worst: round(better === 'lower' ? Math.max(...values) : Math.min(...values)),
    rounds: values.length,
  };
}
