// 4. Scale: 1,000 distinct locks held at once by one process (a fresh child process per variant).
import { Etcd3 } from 'etcd3';
import { spawnNodeScript } from '../../test/harness/processes.js';
import type { BenchContext } from '../context.js';
import { etcdCounters } from '../metrics.js';
import { round } from '../stats.js';

interface Memory {
  rss: number;
  heapUsed: number;
  external: number;
}

export interface ScaleRun {
  locks: number;
  /** False when acquiring all did not finish within the cap (the rest of the figures are then absent). */
  completed: boolean;
  /** Capped runs: locks held when the cap ran out, and the cap. */
  heldAtCap?: number;
  capMs?: number;
  /** Leases etcd has while the locks are held, minus those before (etcd lease list). */
  leases: number;
  /** Distinct leases on the held lock keys. */
  leasesOnLockKeys: number;
  /** Watchers etcd has open while the locks are held, minus those before (etcd_debugging_mvcc_watcher_total). */
  watches: number;
  /** Lock keys present in etcd while held. */
  keys: number;
  acquireAllMs: number;
  releaseAllMs: number;
  /** Process memory after a GC: before acquiring, while holding, and the difference per lock. */
  memoryBefore: Memory;
  memoryHeld: Memory;
  heapBytesPerLock: number;
  rssBytesPerLock: number;
  /** Holds whose signal had aborted (session lost, key gone) when all were acquired / after the counts (ours only). */
  lostAtHeld?: number;
  lostAfterCounts?: number;
  /** Process warnings the child printed (e.g. MaxListenersExceededWarning). */
  warnings: string[];
}

export interface ScaleResult {
  method: string;
  ours: ScaleRun;
  etcd3Lock: ScaleRun;
  /** Ours at 10,000 locks, capped in time (see completed / heldAtCap). */
  oursLarge?: ScaleRun;
}

async function runScale(ctx: BenchContext, impl: 'ours' | 'etcd3', count: number, capMs = 120_000): Promise<ScaleRun> {
  const raw = new Etcd3({ hosts: ctx.etcd.endpoint });
  const prefix = impl === 'ours' ? 'scale-ours/' : 'scale-etcd3/';
  const worker = spawnNodeScript('bench/worker.js', {
    args: ['scale', ctx.etcd.endpoint, impl, String(count)],
    nodeArgs: ['--expose-gc'],
    name: `scale-${impl}`,
  });
  try {
    // The previous section's apps may still be closing their watches: start from a settled count.
    let last = -1;
    for (let i = 0; i < 50; i++) {
      const now = (await etcdCounters(ctx.etcd.clientUrl)).watchers;
      if (now === last) break;
      last = now;
      await new Promise((r) => setTimeout(r, 200));
    }
    const leasesBefore = (await raw.leaseClient.leaseLeases()).leases.length;
    const countersBefore = await etcdCounters(ctx.etcd.clientUrl);
    const ready = await worker.waitForMessage('ready', 60_000);
    worker.send({ type: 'acquire' });
    let held;
    try {
      held = await worker.waitForMessage('held', capMs);
    } catch {
      const last = worker.messages.filter((m) => m.type === 'progress').at(-1);
      const incomplete: ScaleRun = {
        locks: count, completed: false, heldAtCap: Number(last?.acquired ?? 0), capMs, leases: NaN, leasesOnLockKeys: NaN,
        watches: (await etcdCounters(ctx.etcd.clientUrl)).watchers - countersBefore.watchers, keys: NaN, acquireAllMs: NaN, releaseAllMs: NaN,
        memoryBefore: ready.memory as Memory, memoryHeld: ready.memory as Memory, heapBytesPerLock: NaN, rssBytesPerLock: NaN, warnings: [],
      };
      // SIGKILL in finally: etcd expires the session's lease and its keys.
      return incomplete;
    }
    // Held-key watches are created in the background after each acquire: count once they settle.
    let countersHeld = await etcdCounters(ctx.etcd.clientUrl);
    for (let i = 0; i < 40; i++) {
      await new Promise((r) => setTimeout(r, 250));
      const next = await etcdCounters(ctx.etcd.clientUrl);
      const settled = next.watchers === countersHeld.watchers;
      countersHeld = next;
      if (settled) break;
    }
    const leasesHeld = (await raw.leaseClient.leaseLeases()).leases.length;
    const kvs = (await raw.getAll().prefix(prefix).exec()).kvs;
    worker.send({ type: 'lost' });
    const lostAfter = impl === 'ours' ? Number((await worker.waitForMessage('lost', 30_000)).lost) : undefined;
    worker.send({ type: 'release' });
    const released = await worker.waitForMessage('released', 120_000);
    worker.send({ type: 'stop' });
    const stopped = await worker.waitForMessage('stopped', 30_000);
    const before = ready.memory as Memory;
    const during = held.memory as Memory;
    return {
      locks: count,
      completed: true,
      leases: leasesHeld - leasesBefore,
      leasesOnLockKeys: new Set(kvs.map((kv) => kv.lease)).size,
      watches: countersHeld.watchers - countersBefore.watchers,
      keys: kvs.length,
      acquireAllMs: round(Number(held.ms), 1),
      releaseAllMs: round(Number(released.ms), 1),
      memoryBefore: before,
      memoryHeld: during,
      heapBytesPerLock: Math.round((during.heapUsed - before.heapUsed) / count),
      rssBytesPerLock: Math.round((during.rss - before.rss) / count),
      warnings: [...new Set((stopped.warnings as string[] | undefined) ?? [])],
      ...(impl === 'ours' ? { lostAtHeld: Number(held.lost ?? 0), lostAfterCounts: lostAfter } : {}),
    };
  } finally {
    raw.close();
    await worker.kill('SIGKILL');
  }
}

export async function scale(ctx: BenchContext): Promise<ScaleResult> {
  // Both at 1,000 (complete figures), then ours at 10,000 with a time cap: every held lock has its own
  // key watch since the held-key watch (lib/queue/held-key-watch.ts), and etcd3 creates watchers one at a time.
  const largeCount = ctx.quick ? 2_000 : 10_000;
  const count = 1_000;
  const ours = await runScale(ctx, 'ours', count);
  ctx.log(`ours: ${ours.leases} lease(s), ${ours.watches} watch(es), ${ours.heapBytesPerLock} heap bytes/lock`);
  const etcd3Lock = await runScale(ctx, 'etcd3', count);
  ctx.log(`etcd3: ${etcd3Lock.leases} lease(s), ${etcd3Lock.watches} watch(es), ${etcd3Lock.heapBytesPerLock} heap bytes/lock`);
  const capMs = ctx.quick ? 30_000 : 90_000;
  const oursLarge = await runScale(ctx, 'ours', largeCount, capMs);
  ctx.log(oursLarge.completed
    ? `ours, ${largeCount}: all held in ${oursLarge.acquireAllMs} ms, ${oursLarge.leases} lease(s), ${oursLarge.watches} watch(es)`
    : `ours, ${largeCount}: NOT all held within ${capMs} ms (${oursLarge.heldAtCap} held, ${oursLarge.watches} watches open)`);
  return {
    oursLarge,
    method:
      `A fresh child process acquires ${count} distinct locks concurrently (Promise.all) and holds them (ours also ${largeCount}, ` +
      `capped at ${capMs / 1000} s: how many it held by then): ours with ` +
      'LockService in one Nest app, etcd3Lock with client.lock(name).acquire() on one etcd3 client. While held, the runner ' +
      'counts leases (LeaseLeases), lock keys and the distinct leases on them, and etcd\'s open watchers ' +
      '(etcd_debugging_mvcc_watcher_total, minus the count before). Memory: process.memoryUsage() after two forced GCs ' +
      '(--expose-gc), before acquiring and while holding.',
    ours,
    etcd3Lock,
  };
}
