// 3. Herd effect: N waiters on one lock, watch events delivered per handoff,
// ours (each waiter watches its predecessor) vs a naive lock whose waiters watch the whole prefix.
import type { INestApplicationContext } from '@nestjs/common';
import { Etcd3 } from 'etcd3';
import { LockService, type LockHandle } from '../../lib/index.js';
import { createBenchApp, msBetween, nowNs, sleep } from '../common.js';
import type { BenchContext } from '../context.js';
import { clientWatchEvents, counterDelta, etcdCounters, installClientWatchCounter, type EtcdCounters } from '../metrics.js';
import { round, summarize, type Summary } from '../stats.js';

export interface HerdRun {
  waiters: number;
  handoffs: number;
  /** Server side: etcd_debugging_mvcc_events_total delta / handoffs. */
  watchEventsPerHandoff: number;
  /** Client side: events received by etcd3 Watchers in this process / handoffs. */
  clientWatchEventsPerHandoff: number;
  /** etcd unary requests (reads + writes) per handoff. */
  etcdRequestsPerHandoff: number;
  etcdRequestsByMethod: Record<string, number>;
  /** etcd watch streams opened per handoff (grpc_server_started_total, Watch). */
  watchStreamsOpenedPerHandoff: number;
  handoff: Summary;
  /** Release of the first holder -> last waiter has the lock, ms. */
  chainMs: number;
}

export interface HerdResult {
  method: string;
  ours: HerdRun[];
  naivePrefixWatch: HerdRun[];
  /** The long chain (1,000 waiters; ours only), apps sharing etcd clients (50 sessions per client). */
  longChain?: HerdRun & { appsStartMs: number; sessionsPerClient: number; rssMiB: number };
}

interface Chain {
  /** Resolves when every waiter has had and released the lock; gives [acquired, releaseStart] per hold. */
  done: Promise<Array<[bigint, bigint]>>;
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const until = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > until) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

/** Runs one chain of `waiters` handoffs and measures it between two metric snapshots. */
async function measureChain(
  ctx: BenchContext,
  waiters: number,
  setUp: () => Promise<{ chain: Chain; releaseFirst: () => Promise<void> }>,
  expectedWatchers: number,
): Promise<HerdRun> {
  const baseline = await etcdCounters(ctx.etcd.clientUrl);
  const { chain, releaseFirst } = await setUp();
  // Every waiter is queued and watching before we start counting.
  await waitFor(`${expectedWatchers} watchers`, async () => (await etcdCounters(ctx.etcd.clientUrl)).watchers >= baseline.watchers + expectedWatchers);
  await sleep(100);
  const before: EtcdCounters = await etcdCounters(ctx.etcd.clientUrl);
  const clientBefore = clientWatchEvents();
  const t0 = nowNs();
  const firstRelease = nowNs();
  await releaseFirst();
  const holds = await chain.done;
  const chainMs = msBetween(t0, holds.reduce((m, h) => (h[0] > m ? h[0] : m), 0n));
  await sleep(300); // late events (if any) are counted too
  const after = await etcdCounters(ctx.etcd.clientUrl);
  const delta = counterDelta(before, after);
  holds.sort((a, b) => (a[0] < b[0] ? -1 : 1));
  const handoffs: number[] = [];
  let previousRelease = firstRelease;
  for (const [acquired, releaseStart] of holds) {
    handoffs.push(msBetween(previousRelease, acquired));
    previousRelease = releaseStart;
  }
  return {
    waiters,
    handoffs: holds.length,
    watchEventsPerHandoff: round(delta.watchEventsSent / holds.length, 3),
    clientWatchEventsPerHandoff: round((clientWatchEvents() - clientBefore) / holds.length, 3),
    etcdRequestsPerHandoff: round(delta.unaryTotal / holds.length, 3),
    etcdRequestsByMethod: delta.unary,
    watchStreamsOpenedPerHandoff: round(delta.watchStreamsOpened / holds.length, 3),
    handoff: summarize(handoffs),
    chainMs: round(chainMs, 2),
  };
}

/** Our LockService: one app (session) per waiter, each waiter releases as soon as it has the lock. */
async function oursChain(ctx: BenchContext, apps: INestApplicationContext[], waiters: number): Promise<HerdRun> {
  const name = `herd-${waiters}`;
  return measureChain(
    ctx,
    waiters,
    async () => {
      const first = await apps[0]!.get(LockService).acquire(name);
      const done = Promise.all(
        apps.slice(1, waiters + 1).map(async (app) => {
          const handle: LockHandle = await app.get(LockService).acquire(name);
          const acquired = nowNs();
          const releaseStart = nowNs();
          await handle.release();
          return [acquired, releaseStart] as [bigint, bigint];
        }),
      );
      return { chain: { done }, releaseFirst: () => first.release() };
    },
    waiters,
  );
}

/**
 * The naive lock: a key per waiter under one prefix (create revision order), every
 * waiter watches the WHOLE prefix for deletes and re-reads the oldest key on each one.
 * One client (connection) per waiter, like separate processes.
 */
async function naiveChain(ctx: BenchContext, clients: Etcd3[], waiters: number): Promise<HerdRun> {
  const prefix = `naive-${waiters}/`;
  const leases = clients.slice(0, waiters + 1).map((c) => c.lease(60));
  try {
    return await measureChain(
      ctx,
      waiters,
      async () => {
        const keys: string[] = [];
        for (const [i, lease] of leases.entries()) {
          const leaseId = await lease.grant();
          const key = `${prefix}${leaseId}`;
          await clients[i]!.put(key).value('').lease(leaseId);
          keys.push(key);
        }
        let ready = 0;
        const done = Promise.all(
          keys.slice(1).map(async (myKey, i) => {
            const client = clients[i + 1]!;
            const watcher = await client.watch().prefix(prefix).only('delete').create();
            const isOldest = async () => {
              const res = await client.getAll().prefix(prefix).sort('Create', 'Ascend').limit(1).keys();
              return res[0] === myKey;
            };
            await new Promise<void>((resolve, reject) => {
              let checking = false;
              let again = false;
              const check = async (): Promise<void> => {
                if (checking) {
                  again = true;
                  return;
                }
                checking = true;
                try {
                  do {
                    again = false;
                    if (await isOldest()) {
                      watcher.removeAllListeners('delete');
                      resolve();
                      return;
                    }
                  } while (again);
                } catch (err) {
                  reject(err);
                } finally {
                  checking = false;
                }
              };
              watcher.on('delete', () => void check());
              void check().then(() => ready++);
            });
            const acquired = nowNs();
            const releaseStart = nowNs();
            await client.delete().key(myKey);
            await watcher.cancel();
            return [acquired, releaseStart] as [bigint, bigint];
          }),
        );
        await waitFor('naive waiters checked once', async () => ready >= waiters);
        return { chain: { done }, releaseFirst: async () => void (await clients[0]!.delete().key(keys[0]!)) };
      },
      waiters,
    );
  } finally {
    await Promise.all(leases.map((l) => l.revoke().catch(() => undefined)));
  }
}

export async function herd(ctx: BenchContext): Promise<HerdResult> {
  installClientWatchCounter();
  const sizes = ctx.quick ? [10, 30] : [10, 100];
  const max = Math.max(...sizes);
  const apps: INestApplicationContext[] = [];
  const clients: Etcd3[] = [];
  try {
    for (let i = 0; i <= max; i += 10) {
      const batch = Array.from({ length: Math.min(10, max + 1 - i) }, (_, j) =>
        createBenchApp({ hosts: ctx.etcd.endpoint, identity: `herd-${i + j}`, namespace: 'herd/', election: false, sessionTtl: 30 }),
      );
      apps.push(...(await Promise.all(batch)));
    }
    ctx.log(`${apps.length} Nest apps (sessions) ready`);
    const ours: HerdRun[] = [];
    for (const n of sizes) {
      ours.push(await oursChain(ctx, apps, n));
      ctx.log(`ours, ${n} waiters: ${ours.at(-1)!.watchEventsPerHandoff} events/handoff`);
    }
    await Promise.all(apps.splice(0).map((a) => a.close()));

    for (let i = 0; i <= max; i++) clients.push(new Etcd3({ hosts: ctx.etcd.endpoint }));
    const naivePrefixWatch: HerdRun[] = [];
    for (const n of sizes) {
      naivePrefixWatch.push(await naiveChain(ctx, clients, n));
      ctx.log(`naive, ${n} waiters: ${naivePrefixWatch.at(-1)!.watchEventsPerHandoff} events/handoff`);
    }
    // The long chain: 1,000 sessions, as many apps, sharing 20 etcd3 clients (the `client` option)
    // so the process does not hold 1,000 gRPC connections.
    const longN = ctx.quick ? 200 : 1_000;
    const perClient = 50;
    const t0 = nowNs();
    for (let i = 0; i * perClient <= longN; i++) clients.push(new Etcd3({ hosts: ctx.etcd.endpoint }));
    const shared = clients.slice(-Math.ceil((longN + 1) / perClient));
    for (let i = 0; i <= longN; i += 25) {
      const batch = Array.from({ length: Math.min(25, longN + 1 - i) }, (_, j) =>
        createBenchApp({ client: shared[Math.floor((i + j) / perClient)]!, identity: `long-${i + j}`, namespace: 'herd-long/', election: false, sessionTtl: 60 }),
      );
      apps.push(...(await Promise.all(batch)));
    }
    const appsStartMs = round(msBetween(t0, nowNs()), 0);
    ctx.log(`${apps.length} apps for the long chain ready in ${appsStartMs} ms`);
    const long = await oursChain(ctx, apps, longN);
    const rssMiB = Math.round(process.memoryUsage().rss / 2 ** 20);
    ctx.log(`ours, ${longN} waiters: ${long.watchEventsPerHandoff} events/handoff, chain ${long.chainMs} ms`);
    await Promise.all(apps.splice(0).map((a) => a.close()));
    return {
      longChain: { ...long, appsStartMs, sessionsPerClient: perClient, rssMiB },
      method:
        'One holder plus N waiters on one lock, each waiter with its own session/connection in this process; ' +
        'once every waiter is queued and watching, the holder releases and each waiter releases as soon as it has the lock. ' +
        'Watch events: delta of etcd_debugging_mvcc_events_total (events etcd sent to watchers, after their filters, all streams) ' +
        'over the chain, divided by the N handoffs; cross-checked by counting events received by every etcd3 Watcher ' +
        'in this process. The naive lock watches the whole prefix for deletes and re-reads the oldest key on each. ' +
        `Long chain: ${longN} waiters (ours only), one Nest app and session each, ${perClient} apps sharing one etcd3 client ` +
        '(the client option), same measurement.',
      ours,
      naivePrefixWatch,
    };
  } finally {
    await Promise.all(apps.map((a) => a.close().catch(() => undefined)));
    for (const c of clients) c.close();
  }
}
