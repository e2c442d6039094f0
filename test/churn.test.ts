// Every loop that re-arms must release what its previous round added: after N cycles of
// resign/rejoin, acquire/abort, campaign/abort and session loss, the counts of listeners, timers,
// watchers, holds and names in use are back where they started. Real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { after, describe, it } from 'node:test';
import { ElectionService, LockService, SessionService } from '../lib/index.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { QueueEngine } from '../lib/queue/queue.engine.js';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

type App = Awaited<ReturnType<typeof createApp>>;

function census(app: App) {
  const sessions = app.get(SessionService);
  const timers = process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
  const session = sessions.peek();
  return {
    shutdownListeners: getEventListeners(sessions.shutdownSignal, 'abort').length,
    sessionListeners: session ? getEventListeners(session.signal, 'abort').length : 0,
    watchers: app.get(EtcdWatches).size,
    holds: app.get(QueueEngine).holds().length,
    names: app.get(QueueEngine).names.size,
    timers,
  };
}

/** Every count of `now` is at most `base` (+ slack for timers that other tests' sockets may own). */
function assertNoGrowth(label: string, base: ReturnType<typeof census>, now: ReturnType<typeof census>): void {
  for (const key of Object.keys(base) as Array<keyof typeof base>) {
    const slack = key === 'timers' ? 3 : 0;
    assert.ok(now[key] <= base[key] + slack, `${label}: ${key} grew from ${base[key]} to ${now[key]} (${JSON.stringify(now)})`);
  }
}

describe('churn leaks nothing (real etcd)', () => {
  after(() => closeApps());

  it('200 cycles each of resign/rejoin, acquire/abort and campaign/abort', async () => {
    const ns = uniqueNamespace('churn');
    const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'churn', election: 'leader', sessionTtl: 5 });
    const other = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'other', sessionTtl: 5 });
    const elections = app.get(ElectionService);
    const locks = app.get(LockService);
    await eventually(() => elections.isLeader(), 10_000, 'leads');
    const blocker = await other.get(LockService).acquire('busy');
    const otherLeads = await other.get(ElectionService).campaign('taken');
    await delay(200);
    const base = census(app);
    const cycles = 200;
    for (let i = 0; i < cycles; i++) {
      await elections.resign(undefined, { rejoin: false });
      assert.equal(elections.isLeader(), false);
      elections.rejoin();
      await eventually(() => elections.isLeader(), 10_000, `leads again (cycle ${i})`);

      const controller = new AbortController();
      const waiting = locks.acquire('busy', { signal: controller.signal });
      await delay(2);
      controller.abort(new Error('churn'));
      await assert.rejects(waiting);

      const campaignAbort = new AbortController();
      const campaign = elections.campaign('taken', { signal: campaignAbort.signal });
      await delay(2);
      campaignAbort.abort(new Error('churn'));
      await assert.rejects(campaign);

      await assert.rejects(locks.acquire('busy', { timeout: 1 }));
    }
    await delay(300); // cancellations of the last watches settle
    assertNoGrowth(`after ${cycles} cycles`, base, census(app));
    await otherLeads.release();
    await blocker.release();
  });

  it('session losses: each new session leaves nothing of the old one behind', async () => {
    const ns = uniqueNamespace('losses');
    const proxy = await startProxy(etcd().endpoint);
    try {
      const app = await createApp({ hosts: proxy.endpoint, namespace: ns, identity: 'lossy', election: 'leader', sessionTtl: 2, requestTimeout: 1_000 });
      const elections = app.get(ElectionService);
      await eventually(() => elections.isLeader(), 10_000, 'leads');
      const held = await app.get(LockService).acquire('kept');
      await held.release();
      await delay(200);
      const base = census(app);
      for (let i = 0; i < 3; i++) {
        proxy.setMode({ kind: 'blackhole' });
        await eventually(() => !elections.isLeader(), 10_000, `lost (cycle ${i})`);
        proxy.setMode({ kind: 'reset' });
        await delay(100);
        proxy.setMode({ kind: 'pass' });
        await eventually(() => elections.isLeader(), 20_000, `leads on a new session (cycle ${i})`);
      }
      await delay(500);
      assertNoGrowth('after 3 session losses', base, census(app));
      await app.close();
    } finally {
      await proxy.close();
    }
  });
});
