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
  /** Process warnings the child printed (e.g. MaxListenersExceededWarning). */
  warnings: string[];
}

export interface ScaleResult {
  method: string;
  ours: ScaleRun;
  etcd3Lock: ScaleRun;
}

async function runScale(ctx: BenchContext, impl: 'ours' | 'etcd3', count: number): Promise<ScaleRun> {
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
    const held = await worker.waitForMessage('held', 120_000);
    const leasesHeld = (await raw.leaseClient.leaseLeases()).leases.length;
    const countersHeld = await etcdCounters(ctx.etcd.clientUrl);
    const kvs = (await raw.getAll().prefix(prefix).exec()).kvs;
    worker.send({ type: 'release' });
    const released = await worker.waitForMessage('released', 120_000);
    worker.send({ type: 'stop' });
    const stopped = await worker.waitForMessage('stopped', 30_000);
    const before = ready.memory as Memory;
    const during = held.memory as Memory;
    return {
      locks: count,
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
    };
  } finally {
    raw.close();
    await worker.kill('SIGKILL');
  }
}

export async function scale(ctx: BenchContext): Promise<ScaleResult> {
  // Ours at 10,000; etcd3's Lock (a lease per lock) at 1,000, as before, to keep the run short.
  const oursCount = ctx.quick ? 2_000 : 10_000;
  const count = 1_000;
  const ours = await runScale(ctx, 'ours', oursCount);
  ctx.log(`ours: ${ours.leases} lease(s), ${ours.watches} watch(es), ${ours.heapBytesPerLock} heap bytes/lock`);
  const etcd3Lock = await runScale(ctx, 'etcd3', count);
  ctx.log(`etcd3: ${etcd3Lock.leases} lease(s), ${etcd3Lock.watches} watch(es), ${etcd3Lock.heapBytesPerLock} heap bytes/lock`);
  return {
    method:
      `A fresh child process acquires ${oursCount} (ours) or ${count} (etcd3Lock) distinct locks concurrently (Promise.all) and holds them: ours with ` +
      'LockService in one Nest app, etcd3Lock with client.lock(name).acquire() on one etcd3 client. While held, the runner ' +
      'counts leases (LeaseLeases), lock keys and the distinct leases on them, and etcd\'s open watchers ' +
      '(etcd_debugging_mvcc_watcher_total, minus the count before). Memory: process.memoryUsage() after two forced GCs ' +
      '(--expose-gc), before acquiring and while holding.',
    ours,
    etcd3Lock,
  };
}
