// The session's client-side deadline, with mocked timers and a mocked monotonic clock. The lease
// API is a stand-in that records keepalives and answers only when the test says so (pure logic:
// the real keepalive path is tested against etcd in test/keepalive.test.ts).
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { Instrumentation } from '../../lib/observability/instrumentation.js';
import { EtcdSession, keepAlivePlan } from '../../lib/session/etcd-session.js';
import type { EtcdLeases, KeepAliveHandlers } from '../../lib/etcd/lease.js';
import { SessionLostError } from '../../lib/errors/coordination.errors.js';

let now = 0;
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

/** A lease API whose keepalive stream answers only on demand. */
function fakeLeases() {
  const sent: number[] = [];
  let handlers: KeepAliveHandlers | undefined;
  const leases = {
    openKeepAlive: async (h: KeepAliveHandlers) => {
      handlers = h;
      return { send: () => sent.push(now), close: () => undefined };
    },
    revoke: async () => undefined,
  } as unknown as EtcdLeases;
  return { leases, sent, answer: (ttl: number) => handlers!.answer(ttl) };
}

function session(leases: EtcdLeases, ttlSeconds: number, ended: string[]) {
  const instrumentation = new Instrumentation({ identity: 'test', namespace: '', logLevel: false, metrics: false });
  // Keepalive failures are expected here: log nothing.
  return new EtcdSession(leases, 0x1234n, ttlSeconds, now, 5, 1_000, instrumentation, (_s, reason) => ended.push(reason));
}

/** Advances the mocked clock and timers by `ms`, in steps, letting promise callbacks run. */
async function advance(ms: number, step = 50): Promise<void> {
  for (let left = ms; left > 0; left -= step) {
    const by = Math.min(step, left);
    now += by;
    mock.timers.tick(by);
    await flush();
  }
}

describe('session deadline (mocked clock)', () => {
  beforeEach(() => {
    now = 1_000_000;
    mock.method(performance, 'now', () => now);
    mock.timers.enable({ apis: ['setTimeout'] });
  });
  afterEach(() => {
    mock.timers.reset();
    mock.restoreAll();
  });

  it('without an answer, is lost at grant send time + TTL - margin, not before', async () => {
    const { leases, sent } = fakeLeases();
    const ended: string[] = [];
    const s = session(leases, 3, ended);
    s.start();
    const { marginMs } = keepAlivePlan(3);
    await advance(3_000 - marginMs - 100);
    assert.equal(s.alive, true, 'alive until the deadline');
    assert.ok(sent.length >= 1, 'keepalives were sent');
    await advance(200);
    assert.equal(s.alive, false);
    assert.ok(s.signal.aborted && s.signal.reason instanceof SessionLostError);
    assert.deepEqual(ended, ['deadline']);
    await s.close();
  });

  it('an answer moves the deadline to its keepalive send time + TTL', async () => {
    const { leases, sent, answer } = fakeLeases();
    const ended: string[] = [];
    const s = session(leases, 3, ended);
    s.start();
    await advance(1_000);
    const sentAt = sent.at(-1)!;
    answer(3);
    const { marginMs } = keepAlivePlan(3);
    // Now stop answering: the deadline counts from that keepalive's send time.
    await advance(sentAt + 3_000 - marginMs - now - 50);
    assert.equal(s.alive, true);
    await advance(100);
    assert.equal(s.alive, false);
    assert.deepEqual(ended, ['deadline']);
    await s.close();
  });

  it('etcd answering TTL 0 (the lease is gone) ends the session at once', async () => {
    const { leases, answer } = fakeLeases();
    const ended: string[] = [];
    const s = session(leases, 10, ended);
    s.start();
    await advance(100);
    answer(0);
    assert.equal(s.alive, false);
    assert.deepEqual(ended, ['lease-gone']);
    await s.close();
  });

  it('the margin is 10% of the TTL, at most 500 ms; keepalives every TTL/3', () => {
    assert.equal(keepAlivePlan(2).marginMs, 200);
    assert.equal(keepAlivePlan(10).marginMs, 500);
    assert.equal(keepAlivePlan(3).periodMs, 1_000);
  });
});
