// 6. @LeaderOnly overhead per call (child process: the microbenchmark runs alone).
import { spawnNodeScript } from '../../test/harness/processes.js';
import type { BenchContext } from '../context.js';
import { round } from '../stats.js';

export interface LeaderOnlyResult {
  method: string;
  /** Median ns per call of each method. */
  nsPerCall: Record<string, number>;
  /** Per-rep samples (ns per call). */
  samples: Record<string, number[]>;
  /** Decorated minus undecorated, ns per call. */
  overheadNs: { syncLeader: number; asyncLeader: number; syncNotLeaderSkip: number };
  /**
   * The undecorated async method before any AsyncLocalStorage.run in the process, and after:
   * Node 20's AsyncLocalStorage enables promise hooks process-wide at its first run().
   */
  plainAsyncBeforeAnyAlsRunNs: number;
  processWideAwaitTaxNs: number;
  warnings: string[];
}

export async function leaderOnly(ctx: BenchContext): Promise<LeaderOnlyResult> {
  const syncIterations = ctx.quick ? 50_000 : 300_000;
  const asyncIterations = ctx.quick ? 20_000 : 100_000;
  const reps = ctx.quick ? 3 : 9;
  const worker = spawnNodeScript('bench/worker.js', {
    args: ['leaderonly', ctx.etcd.endpoint, String(syncIterations), String(asyncIterations), String(reps)],
    name: 'leader-only',
  });
  try {
    const r = await worker.waitForMessage('result', 180_000);
    const ns = r.nsPerCall as Record<string, number>;
    return {
      method:
        'A Nest provider with @LeaderOnly() methods and identical undecorated ones, in an app that leads the default ' +
        `election. ${reps} reps of ${syncIterations} sync calls / ${asyncIterations} awaited async calls per method, ` +
        'methods rotated per rep, median ns/call; overhead = decorated - undecorated. syncNotLeaderSkip: @LeaderOnly ' +
        'on an election this app does not lead (the skip path, which logs at debug level).',
      nsPerCall: ns,
      samples: r.samples as Record<string, number[]>,
      overheadNs: {
        syncLeader: round(ns.guarded! - ns.plain!, 1),
        asyncLeader: round(ns.guardedAsync! - ns.plainAsync!, 1),
        syncNotLeaderSkip: round(ns.skipped! - ns.plain!, 1),
      },
      plainAsyncBeforeAnyAlsRunNs: Number(r.plainAsyncBeforeAnyAlsRun),
      processWideAwaitTaxNs: round(ns.plainAsync! - Number(r.plainAsyncBeforeAnyAlsRun), 1),
      warnings: (r.warnings as string[] | undefined) ?? [],
    };
  } finally {
    await worker.kill('SIGKILL');
  }
}
