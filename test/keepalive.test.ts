// Slow links that keepalives can sustain: with the link to etcd delayed (TCP proxy) so that
// the round trip stays well below the keepalive period, one session lives on for many TTLs;
// beyond the sustainable round trip the loss is still reported before etcd expires the lease.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdFixture } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, rawClient, uniqueNamespace } from './support/apps.js';
import { SessionService, type SessionState } from '../lib/index.js';

describe('keepalive on slow links (real etcd, TCP proxy delay)', () => {
  const etcd = etcdFixture();
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    await closeApps();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });

  // ttl:oneWayMs:ttls[:after]; "after": the link slows down once the session exists (else it is
  // slow from the start, so the session is also granted over it).
  const cases = (process.env.KEEPALIVE_CASES ?? '3:300:4,3:600:4,10:1100:3')
    .split(',')
    .map((c) => c.split(':'))
    .map(([ttl, oneWayMs, ttls, when]) => ({ ttl: Number(ttl), oneWayMs: Number(oneWayMs), ttls: Number(ttls), after: when === 'after' }));

  for (const { ttl, oneWayMs, ttls, after } of cases) {
    it(`TTL ${ttl} s with ${oneWayMs} ms each way${after ? ' (from a running session on)' : ''}: one session lives for ${ttls} TTLs`, async (t) => {
      const proxy = await startProxy(etcd().endpoint);
      proxies.push(proxy);
      // The session is made over the slow link too: its first keepalive must not come too late.
      if (!after) proxy.delay(oneWayMs);
      const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('slow'), identity: 'k', sessionTtl: ttl, connectTimeout: 20_000, requestTimeout: 10_000, verbose: process.env.KEEPALIVE_VERBOSE === '1' });
      const sessions = app.get(SessionService);
      const states: SessionState[] = [];
      sessions.state$.subscribe((s) => states.push(s));
      const first = sessions.peek();
      assert.ok(first, 'a session after bootstrap');
      if (after) proxy.delay(oneWayMs);
      const started = Date.now();
      await delay(ttl * 1000 * ttls);
      const lost = states.filter((s) => s.status === 'lost');
      t.diagnostic(`MEASURE ttl=${ttl} oneWay=${oneWayMs}: ${lost.length} loss(es) in ${Date.now() - started} ms${lost.map((l) => ` [${l.since.getTime() - started} ms: ${l.reason}]`).join('')}`);
      assert.deepEqual(lost.map((l) => l.reason), [], 'no session lost');
      assert.equal(sessions.peek(), first, 'the same session throughout');
    });
  }

  it('TTL 3 s with 1.5 s each way (beyond the sustainable round trip): the loss is reported while etcd still has the lease', async (t) => {
    const proxy = await startProxy(etcd().endpoint);
    proxies.push(proxy);
    const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('too-slow'), identity: 'k', sessionTtl: 3 });
    const sessions = app.get(SessionService);
    const session = sessions.peek()!;
    const direct = rawClient(etcd().endpoint);
    try {
      // Ask etcd (directly, not through the slow link) about the lease the moment we are told.
      let serverTtlAtLoss: Promise<number> | undefined;
      let lostAfter = 0;
      const slowAt = Date.now();
      sessions.state$.subscribe((s) => {
        if (s.status !== 'lost' || serverTtlAtLoss) return;
        lostAfter = Date.now() - slowAt;
        serverTtlAtLoss = direct.leaseClient.leaseTimeToLive({ ID: session.leaseId.toString() }).then((r) => Number(r.TTL));
      });
      proxy.delay(1_500);
      await eventually(() => serverTtlAtLoss !== undefined, 10_000, 'session lost');
      const ttl = await serverTtlAtLoss!;
      t.diagnostic(`MEASURE too slow: lost ${lostAfter} ms after the link slowed; etcd's TTL for the lease then: ${ttl} s`);
      assert.ok(ttl >= 0, `etcd had already expired the lease (TTL ${ttl}) when the loss was reported`);
      assert.equal(session.signal.aborted, true);
    } finally {
      direct.close();
    }
  });
});
