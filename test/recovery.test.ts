// Recovery as soon as etcd is reachable again: after a network partition (a proxy that
// blackholes every byte) heals, an acquire made right at the heal holds within a moment,
// not after connectTimeout or a circuit breaker's half-open delay.
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdFixture } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, uniqueNamespace } from './support/apps.js';
import { LockService, SessionService } from '../lib/index.js';

const BLACKHOLES = (process.env.RECOVERY_BLACKHOLES ?? '4000,8000,15000').split(',').map(Number);
const HEAL_MODES = (process.env.RECOVERY_HEALS ?? 'pass,reset').split(',');

describe('recovery after a partition heals (real etcd, TCP proxy)', () => {
  const etcd = etcdFixture();
  const proxies: TcpProxy[] = [];
  afterEach(async () => {
    await closeApps();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
  });
  after(closeApps);

  for (const healMode of HEAL_MODES) {
    for (const blackholeMs of BLACKHOLES) {
      it(`blackhole ${blackholeMs} ms, healed by ${healMode}: an acquire made at the heal holds soon`, async (t) => {
        const proxy = await startProxy(etcd().endpoint);
        proxies.push(proxy);
        const app = await createApp({ hosts: proxy.endpoint, namespace: uniqueNamespace('heal'), identity: 'h', sessionTtl: 3, verbose: process.env.RECOVERY_VERBOSE === '1' });
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
        t.diagnostic(`MEASURE blackhole=${blackholeMs} heal=${healMode}: ${outcome} after ${elapsed} ms; ${events.join(' | ')}`);
        assert.equal(outcome, 'held');
        assert.ok(elapsed < 3_000, `first hold ${elapsed} ms after the heal`);
      });
    }
  }
});
