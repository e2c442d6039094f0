// The soak's nemesis: a seeded plan of faults. planFault() draws from a small PRNG only, never
// from the clock or the state of the run, so the sequence of faults (kind, target slot,
// durations, gaps) is the same for the same --seed, --workers and mode. What the faults then
// do to the workers depends on timing, as in any soak.

/** mulberry32 (public domain): 32-bit state, good enough to pick faults. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export type FaultKind =
  // a worker process
  | 'kill-worker' // SIGKILL, then a new process in the same slot (same link)
  | 'pause-worker' // SIGSTOP shorter than the TTL, then SIGCONT
  | 'long-pause-worker' // SIGSTOP longer than the TTL (its lease expires meanwhile), then SIGCONT
  // a worker's link to etcd (its own proxy)
  | 'blackhole' // every byte dropped, connections stay open
  | 'delay' // every chunk forwarded late
  | 'reset' // every connection reset, new ones too
  // etcd, single node
  | 'etcd-restart' // SIGTERM, same data dir, start again at once
  | 'etcd-crash' // SIGKILL, down for a while, start again
  | 'etcd-pause' // SIGSTOP (sockets stay open, nothing answers), SIGCONT
  // etcd, 3-member cluster
  | 'kill-leader' // SIGKILL the raft leader, restart it later
  | 'kill-follower' // SIGKILL a follower, restart it later
  | 'lose-quorum' // SIGKILL the leader and a follower (no quorum), restart both
  | 'pause-leader'; // SIGSTOP the raft leader, SIGCONT

export interface FaultPlan {
  kind: FaultKind;
  /** The worker slot for worker and link faults. */
  slot?: number;
  /** How long the fault lasts before it is healed (ms). */
  durationMs: number;
  /** delay: ms per chunk and direction. */
  delayMs?: number;
  /** Quiet time after healing, before the next fault (ms). */
  gapMs: number;
}

const SINGLE: Array<[FaultKind, number]> = [
  ['kill-worker', 2],
  ['pause-worker', 1.5],
  ['long-pause-worker', 1.5],
  ['blackhole', 2],
  ['delay', 1.5],
  ['reset', 1.5],
  ['etcd-restart', 1],
  ['etcd-crash', 1],
  ['etcd-pause', 0.7],
];

const CLUSTER: Array<[FaultKind, number]> = [
  ['kill-worker', 2],
  ['pause-worker', 1.5],
  ['long-pause-worker', 1.5],
  ['blackhole', 2],
  ['delay', 1.5],
  ['reset', 1.5],
  ['kill-leader', 1.5],
  ['kill-follower', 0.8],
  ['lose-quorum', 1],
  ['pause-leader', 1],
];

export function faultKinds(cluster: boolean): FaultKind[] {
  return (cluster ? CLUSTER : SINGLE).map(([k]) => k);
}

/** The next fault of the plan. Always draws the same number of values, whatever the kind. */
export function planFault(random: () => number, opts: { cluster: boolean; workers: number; ttlMs: number }): FaultPlan {
  const table = opts.cluster ? CLUSTER : SINGLE;
  const total = table.reduce((sum, [, w]) => sum + w, 0);
  const [r1, r2, r3, r4, r5] = [random(), random(), random(), random(), random()];
  let pick = r1 * total;
  let kind = table[table.length - 1]![0];
  for (const [k, w] of table) {
    if (pick < w) {
      kind = k;
      break;
    }
    pick -= w;
  }
  const slot = Math.floor(r2 * opts.workers);
  const between = (lo: number, hi: number) => Math.round(lo + r3 * (hi - lo));
  const ttl = opts.ttlMs;
  const gapMs = Math.round(500 + r5 * 2_500);
  switch (kind) {
    case 'kill-worker':
      return { kind, slot, durationMs: between(200, 2_000), gapMs };
    case 'pause-worker':
      return { kind, slot, durationMs: between(300, ttl * 0.6), gapMs };
    case 'long-pause-worker':
      return { kind, slot, durationMs: between(ttl + 300, ttl + 3_000), gapMs };
    case 'blackhole':
      return { kind, slot, durationMs: between(1_000, 2 * ttl), gapMs };
    case 'delay':
      // One in four is a link slower than half the TTL each way.
      return { kind, slot, durationMs: between(2_000, 6_000), delayMs: r4 < 0.25 ? Math.round(1_500 + r4 * 4_000) : Math.round(30 + r4 * 600), gapMs };
    case 'reset':
      return { kind, slot, durationMs: between(300, 2_000), gapMs };
    case 'etcd-restart':
      return { kind, durationMs: 0, gapMs };
    case 'etcd-crash':
      // Sometimes down longer than the TTL: every session is lost.
      return { kind, durationMs: between(500, ttl + 2_000), gapMs };
    case 'etcd-pause':
      return { kind, durationMs: between(500, ttl + 1_000), gapMs };
    case 'kill-leader':
    case 'kill-follower':
      return { kind, durationMs: between(1_000, 5_000), gapMs };
    case 'lose-quorum':
      return { kind, durationMs: between(1_000, 4_000), gapMs };
    case 'pause-leader':
      return { kind, durationMs: between(1_000, ttl + 2_000), gapMs };
  }
}
