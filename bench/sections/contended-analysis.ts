// Section 2's arithmetic: merges the holds of all processes into one timeline and derives
// throughput, handoffs (split at the successor's wake-up), fairness and safety checks.
import { msBetween } from '../common.js';
import { round, summarize, type Summary } from '../stats.js';

export interface Hold {
  worker: number;
  acquired: bigint;
  releaseStart: bigint;
  releaseDone: bigint;
  token: bigint | undefined;
  attempts: number;
  /** The successor process's last watch response before it had the lock (ours, one app per process). */
  woke: bigint | undefined;
}

export interface RawPhase {
  impl: 'ours' | 'etcd3' | 'go';
  holds: Hold[];
  windowStart: bigint;
  windowEnd: bigint;
  workers: number;
  unaryTotal: number;
  unary: Record<string, number>;
  watchStreamsOpened: number;
  failed: number;
  disconnects: number;
  probeMs: number[];
  /** CPU (user + system) of all worker processes during the phase, ms. */
  workerCpuMs: number;
  eventLoopDelay: Array<{ p50: number; p99: number; max: number }>;
}

export interface ContendedPhase {
  /** Acquisitions per second inside the measured window. */
  throughputPerSec: number;
  acquisitions: number;
  windowSeconds: number;
  /** Release start of one holder -> acquisition by the next holder, ms. */
  handoff: Summary;
  /**
   * The handoff split at the successor's last watch response (ours): release start -> watch response
   * arrived in the successor's process, and from there -> the successor has the lock.
   */
  handoffParts?: {
    releaseToWake: Summary;
    wakeToAcquired: Summary;
    /** Handoffs slower than the p90: how many, and the mean of each part over them. */
    tail: { thresholdMs: number; n: number; releaseToWakeMeanMs: number; wakeToAcquiredMeanMs: number };
  };
  /** Acquisitions per worker in the window (fairness). */
  perWorker: number[];
  /** etcd unary requests (all methods) per acquisition, whole phase. */
  etcdRequestsPerAcquisition: number;
  etcdRequestsByMethod: Record<string, number>;
  /** Failed try-lock attempts per acquisition (etcd3 retry loop only). */
  failedAttemptsPerAcquisition?: number;
  /** etcd watch streams opened (grpc_server_started_total, Watch) per acquisition. */
  watchStreamsOpenedPerAcquisition: number;
  /** etcd3 watchers that lost their stream and re-subscribed after a backoff ('disconnected'), all workers. */
  watchDisconnects: number;
  /** A put by the runner every 20 ms during the phase: one etcd write under the same load, ms. */
  writeUnderLoad: Summary;
  /** Node workers' CPU per acquisition (all processes), ms; absent for Go. */
  workerCpuMsPerAcquisition?: number;
  /** Event-loop delay of the Node workers: median of their p50s, the largest p99 and max, ms. */
  eventLoopDelay?: { p50: number; p99: number; max: number };
  /** Holds that started before the previous holder began releasing: must be 0. */
  mutualExclusionViolations: number;
  /** Consecutive holders whose fencing tokens did not increase (ours only): must be 0. */
  fencingOrderViolations?: number;
}

const byAcquired = (a: Hold, b: Hold) => (a.acquired < b.acquired ? -1 : a.acquired > b.acquired ? 1 : 0);

export function analyse(raws: RawPhase[]): ContendedPhase {
  const handoffs: number[] = [];
  const toWake: number[] = [];
  const afterWake: number[] = [];
  const split: Array<[number, number, number]> = [];
  let violations = 0;
  let tokenViolations = 0;
  let inWindow = 0;
  let seconds = 0;
  const workers = Math.max(...raws.map((r) => r.workers));
  const perWorker = Array<number>(workers).fill(0);
  for (const raw of raws) {
    const holds = [...raw.holds].sort(byAcquired);
    seconds += msBetween(raw.windowStart, raw.windowEnd) / 1000;
    const inside = (h: Hold) => h.acquired >= raw.windowStart && h.acquired < raw.windowEnd;
    for (const h of holds) if (inside(h)) {
      inWindow++;
      perWorker[h.worker] = (perWorker[h.worker] ?? 0) + 1;
    }
    for (let i = 1; i < holds.length; i++) {
      const prev = holds[i - 1]!;
      const next = holds[i]!;
      if (next.acquired < prev.releaseStart) violations++;
      if (prev.token !== undefined && next.token !== undefined && next.token <= prev.token) tokenViolations++;
      if (!inside(next)) continue;
      const h = msBetween(prev.releaseStart, next.acquired);
      handoffs.push(h);
      // Only a wake-up after the release began can be this handoff's (a process that queued after
      // the release has no such event: its claim saw the lock free or it waited on a later key).
      if (next.woke !== undefined && next.woke >= prev.releaseStart && next.woke <= next.acquired) {
        const a = msBetween(prev.releaseStart, next.woke);
        const b = msBetween(next.woke, next.acquired);
        toWake.push(a);
        afterWake.push(b);
        split.push([h, a, b]);
      }
    }
  }
  const sum = (f: (r: RawPhase) => number) => raws.reduce((acc, r) => acc + f(r), 0);
  const unary: Record<string, number> = {};
  for (const r of raws) for (const [m, v] of Object.entries(r.unary)) unary[m] = (unary[m] ?? 0) + v;
  const holdsTotal = Math.max(1, sum((r) => r.holds.length));
  const handoff = summarize(handoffs);
  const phase: ContendedPhase = {
    throughputPerSec: round(inWindow / seconds, 1),
    acquisitions: inWindow,
    windowSeconds: round(seconds, 2),
    handoff,
    perWorker,
    etcdRequestsPerAcquisition: round(sum((r) => r.unaryTotal) / holdsTotal, 2),
    etcdRequestsByMethod: unary,
    watchStreamsOpenedPerAcquisition: round(sum((r) => r.watchStreamsOpened) / holdsTotal, 2),
    watchDisconnects: sum((r) => r.disconnects),
    writeUnderLoad: summarize(raws.flatMap((r) => r.probeMs)),
    mutualExclusionViolations: violations,
  };
  if (split.length > 0) {
    const threshold = handoff.p90;
    const tail = split.filter(([h]) => h > threshold);
    const mean = (xs: number[]) => (xs.length ? round(xs.reduce((a, b) => a + b, 0) / xs.length, 3) : Number.NaN);
    phase.handoffParts = {
      releaseToWake: summarize(toWake),
      wakeToAcquired: summarize(afterWake),
      tail: { thresholdMs: threshold, n: tail.length, releaseToWakeMeanMs: mean(tail.map((t) => t[1])), wakeToAcquiredMeanMs: mean(tail.map((t) => t[2])) },
    };
  }
  const impl = raws[0]!.impl;
  if (impl !== 'go') {
    phase.workerCpuMsPerAcquisition = round(sum((r) => r.workerCpuMs) / holdsTotal, 3);
    const eld = raws.flatMap((r) => r.eventLoopDelay);
    if (eld.length > 0) {
      const p50s = eld.map((e) => e.p50).sort((a, b) => a - b);
      phase.eventLoopDelay = { p50: p50s[Math.floor(p50s.length / 2)]!, p99: Math.max(...eld.map((e) => e.p99)), max: Math.max(...eld.map((e) => e.max)) };
    }
  }
  if (impl === 'ours') phase.fencingOrderViolations = tokenViolations;
  if (impl === 'etcd3') phase.failedAttemptsPerAcquisition = round(sum((r) => r.failed) / holdsTotal, 2);
  return phase;
}
