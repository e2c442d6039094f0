// Slow links that keepalives can sustain: with the link to etcd delayed (TCP proxy) so that
// the round trip stays well below the keepalive period, one session lives on for many TTLs;
// beyond the sustainable round trip the loss is still reported before etcd expires the lease.
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdFixture } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { closeApps, createApp, delay } from './support/apps.js';
import { uniqueNamespace } from './support/apps.js';
import { SessionService, type SessionState } from '../lib/index.js';

describe('keepalive on slow links (real etcd, TCP proxy delay)', () => {
  const etcd = etcdFixture();
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    await closeApps();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });

  const cases: Array<{ ttl: number; oneWayMs: number; ttls: number }> = (process.env.KEEPALIVE_CASES ?? '3:300:4,3:600:4,10:1100:3')
    .split(',')
    .map((c) => c.split(':').map(Number))
    .map(([ttl, oneWayMs, ttls]) => ({ ttl: ttl!, oneWayMs: oneWayMs!, ttls: ttls! }));

  for (const { ttl, oneWayMs, ttls } of cases) {
    it(`TTL ${ttl} s with ${oneWayMs} ms each way: one session lives for ${ttls} TTLs`, async (t) => {
      const proxy = await startProxy(etcd().endpoint);
      proxies.push(proxy);
      // The session is made over the slow link too: its first keepalive must not come too late.
      proxy.delay(oneWayMs);
      const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('slow'), identity: 'k', sessionTtl: ttl, connectTimeout: 20_000, requestTimeout: 10_000, verbose: process.env.KEEPALIVE_VERBOSE === '1' });
      const sessions = app.get(SessionService);
      const states: SessionState[] = [];
      sessions.state$.subscribe((s) => states.push(s));
      const first = sessions.peek();
      assert.ok(first, 'a session after bootstrap');
      const started = Date.now();
      await delay(ttl * 1000 * ttls);
      const lost = states.filter((s) => s.status === 'lost');
      t.diagnostic(`MEASURE ttl=${ttl} oneWay=${oneWayMs}: ${lost.length} loss(es) in ${Date.now() - started} ms${lost.map((l) => ` [${l.since.getTime() - started} ms: ${l.reason}]`).join('')}`);
      assert.deepEqual(lost.map((l) => l.reason), [], 'no session lost');
      assert.equal(sessions.peek(), first, 'the same session throughout');
    });
  }
});
