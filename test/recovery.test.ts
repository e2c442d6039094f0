// Recovery as soon as etcd is reachable again: after a network partition (a proxy that
// blackholes every byte) heals, an acquire made right at the heal holds within a moment,
// not after connectTimeout or a circuit breaker's half-open delay.
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdFixture } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, uniqueNamespace } from './support/apps.js';
import { LockService, SessionService } from '../lib/index.js';

// blackholeMs:heal[:ttl]. heal "pass": the proxy forwards again and the connections stay
// (bytes lost in the partition stay lost, as in a handshake that never completes); "reset": the
// connections are reset first, as a healed network usually does to silently dead ones.
// With TTL 10 the session outlives the partition and must survive it.
const CASES = (process.env.RECOVERY_CASES ?? '4000:pass,8000:pass,15000:pass,4000:reset,8000:reset,15000:reset,8000:pass:10')
  .split(',')
  .map((c) => c.split(':'))
  .map(([ms, heal, ttl]) => ({ blackholeMs: Number(ms), healMode: heal!, ttl: Number(ttl ?? 3) }));
/** The first hold after the heal must come well within the caller's timeout (15 s). */
const HOLD_WITHIN_MS = 3_000;

describe('recovery after a partition heals (real etcd, TCP proxy)', () => {
  const etcd = etcdFixture();
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    await closeApps();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });
  after(closeApps);

  for (const { blackholeMs, healMode, ttl } of CASES) {
    {
      const survives = ttl * 1000 > blackholeMs + 1_000;
      it(`TTL ${ttl} s, blackhole ${blackholeMs} ms, healed by ${healMode}: an acquire made at the heal holds within ${HOLD_WITHIN_MS} ms${survives ? ', and the session survives' : ''}`, async (t) => {
        const proxy = await startProxy(etcd().endpoint);
        proxies.push(proxy);
        const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('heal'), identity: 'h', sessionTtl: ttl, verbose: process.env.RECOVERY_VERBOSE === '1' });
        const locks = app.get(LockService);
        const sessions = app.get(SessionService);
        const events: string[] = [];
        const t0 = Date.now();
        sessions.state$.subscribe((s) => events.push(`${Date.now() - t0}ms ${s.status}${s.reason ? ` (${s.reason})` : ''}`));
        (await locks.acquire('warm', { timeout: 5_000 })).release();
        proxy.blackhole();
        await delay(blackholeMs);
        if (healMode === 'reset') {
          proxy.reset();
          await delay(100);
        }
        proxy.pass();
        const healedAt = Date.now();
        events.push(`${healedAt - t0}ms healed`);
        let outcome: string;
        let elapsed: number;
        try {
          const handle = await locks.acquire('after-heal', { timeout: 15_000 });
          elapsed = Date.now() - healedAt;
          outcome = 'held';
          await handle.release();
        } catch (err) {
          elapsed = Date.now() - healedAt;
          outcome = `${(err as Error).name}: ${(err as Error).message}`;
        }
        t.diagnostic(`MEASURE ttl=${ttl} blackhole=${blackholeMs} heal=${healMode}: ${outcome} after ${elapsed} ms; ${events.join(' | ')}`);
        assert.equal(outcome, 'held');
        assert.ok(elapsed < HOLD_WITHIN_MS, `first hold ${elapsed} ms after the heal`);
        if (survives) assert.deepEqual(events.filter((e) => e.includes('lost')), [], 'the session outlived the partition');
      });
    }
  }
});
