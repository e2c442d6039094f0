// When no etcd member can serve (every host refusing connections, or a 3-member cluster
// without quorum), every call fails with a typed EtcdUnavailableError that names the hosts
// and keeps the cause: never etcd3's raw cockatiel BrokenCircuitError ("Execution prevented
// because the circuit breaker is open"), and never a secret in the message.
import { describe, it, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import type { INestApplicationContext } from '@nestjs/common';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { closeApps, createApp, eventually, uniqueNamespace } from './support/apps.js';
import { ElectionService, EtcdUnavailableError, LockService, SessionService } from '../lib/index.js';

/** Longest any single call may take to give up (they are bounded by connectTimeout / requestTimeout). */
const CALL_BOUND_MS = 12_000;

async function bounded<T>(label: string, promise: Promise<T>): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`${label} neither resolved nor rejected within ${CALL_BOUND_MS} ms`)), CALL_BOUND_MS);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Every text an error carries: message, stack, and the same for each cause. */
function errorText(err: unknown): string {
  const parts: string[] = [];
  for (let e: unknown = err, depth = 0; e && depth < 10; e = (e as { cause?: unknown }).cause, depth++) {
    parts.push(String((e as Error).message), String((e as Error).stack));
  }
  return parts.join('\n');
}

/**
 * acquire() without a timeout and campaign() are bounded by connectTimeout while etcd cannot be
 * reached (the engine asks for a session without a signal, or retries transient errors for that
 * long): they reject typed too.
 */
const ENGINE_TODO: string | undefined = undefined;

function assertUnavailable(label: string, err: unknown, hosts: readonly string[], secret?: string): true {
  assert.ok(err instanceof EtcdUnavailableError, `${label}: expected EtcdUnavailableError, got ${(err as Error)?.name}: ${(err as Error)?.message}`);
  assert.equal(err.code, 'ETCD_UNAVAILABLE', label);
  for (const host of hosts) assert.ok(err.message.includes(host), `${label}: the message names ${host}: ${err.message}`);
  assert.deepEqual([...err.hosts], [...hosts], `${label}: err.hosts`);
  assert.ok(err.cause !== undefined, `${label}: the cause is kept`);
  assert.doesNotMatch(err.message, /circuit breaker is open/, `${label}: the message explains, not cockatiel`);
  if (secret) assert.ok(!errorText(err).includes(secret), `${label}: no secret in the error`);
  return true;
}

/** Calls every entry point once (one subtest each); each must reject with EtcdUnavailableError. */
async function assertAllUnavailable(t: TestContext, app: INestApplicationContext, hosts: readonly string[], secret?: string): Promise<void> {
  const locks = app.get(LockService);
  const elections = app.get(ElectionService);
  const calls: Array<[string, () => Promise<unknown>, string | undefined]> = [
    ['holder', () => locks.holder('u-lock'), undefined],
    ['leader', () => elections.leader('u-election'), undefined],
    ['tryAcquire', () => locks.tryAcquire('u-lock'), undefined],
    ['acquire', () => locks.acquire('u-lock'), ENGINE_TODO],
    ['campaign', () => elections.campaign('u-election'), ENGINE_TODO],
  ];
  for (const [label, call, todo] of calls) {
    await t.test(label, { todo }, async (st) => {
      const started = Date.now();
      await assert.rejects(bounded(label, call()), (err: unknown) => assertUnavailable(label, err, hosts, secret));
      st.diagnostic(`${label} rejected after ${Date.now() - started} ms`);
    });
  }
}

describe('no etcd member can serve: typed EtcdUnavailableError (real etcd)', () => {
  let server: EtcdServer | undefined;
  let cluster: EtcdCluster | undefined;
  const proxies: TcpProxy[] = [];
  // Not afterEach: node:test runs it after every subtest too, and the subtests share one app.
  async function cleanup(): Promise<void> {
    await closeApps();
    await Promise.all(proxies.splice(0).map((p) => p.close()));
    await server?.stop();
    await cluster?.stop();
    server = cluster = undefined;
  }

  it('every host refusing connections (two hosts, so etcd3 breaks circuits): all calls reject typed, no secret', async (t) => {
    try {
    const rootPassword = `root-${randomBytes(12).toString('base64url')}`;
    server = await startEtcd({ auth: { rootPassword } });
    const [a, b] = [await startProxy(server.endpoint), await startProxy(server.endpoint)];
    proxies.push(a!, b!);
    const hosts = [a!.endpoint, b!.endpoint];
    const app = await createApp({
      hosts,
      auth: { username: 'root', password: rootPassword },
      namespace: uniqueNamespace('refused'),
      identity: 'u',
      sessionTtl: 3,
      connectTimeout: 2_000,
      requestTimeout: 1_000,
    });
    const sessions = app.get(SessionService);
    a!.reset();
    b!.reset();
    // The session is lost at its client-side deadline: from then on every call needs etcd.
    await eventually(() => sessions.state.status === 'lost', 10_000, 'session lost');
    await assertAllUnavailable(t, app, hosts, rootPassword);

    // SessionService's contract, which the engine builds on.
    await t.test('session(): bounded by connectTimeout', async () => {
      const started = Date.now();
      await assert.rejects(sessions.session(), (err: unknown) => assertUnavailable('session()', err, hosts, rootPassword));
      const took = Date.now() - started;
      assert.ok(took >= 1_900 && took < 6_000, `session() gave up after ${took} ms (connectTimeout 2000)`);
    });
    await t.test('session(signal): keeps trying past connectTimeout until the signal aborts, then rejects with its reason', async () => {
      const started = Date.now();
      const signal = AbortSignal.timeout(4_000);
      await assert.rejects(sessions.session(signal), (err: unknown) => err === signal.reason);
      const took = Date.now() - started;
      assert.ok(took >= 3_900, `session(signal) gave up after ${took} ms, before its signal`);
    });
    await t.test('session(signal, { patienceMs }): EtcdUnavailableError once patience runs out', async () => {
      const started = Date.now();
      await assert.rejects(sessions.session(AbortSignal.timeout(30_000), { patienceMs: 1_000 }), (err: unknown) => {
        assertUnavailable('session(signal, patience)', err, hosts, rootPassword);
        assert.equal((err as EtcdUnavailableError).retryable, false);
        return true;
      });
      const took = Date.now() - started;
      assert.ok(took >= 950 && took < 5_000, `gave up after ${took} ms (patience 1000)`);
    });
    // And it comes back when the hosts do.
    a!.pass();
    b!.pass();
    // (Another lock: an acquire('u-lock') above may still be waiting, and would take u-lock first.)
    const healedAt = Date.now();
    const handle = await app.get(LockService).acquire('u-back', { timeout: 15_000 });
    t.diagnostic(`hosts back: first hold after ${Date.now() - healedAt} ms`);
    await handle.release();
    } finally {
      await cleanup();
    }
  });

  it('3-member cluster with 2 members stopped (no quorum): all calls reject typed', async (t) => {
    try {
    cluster = await startEtcdCluster(3);
    const hosts = cluster.endpoints;
    const app = await createApp({ hosts, namespace: uniqueNamespace('quorum'), identity: 'q', sessionTtl: 3, connectTimeout: 3_000, requestTimeout: 1_500 });
    const sessions = app.get(SessionService);
    await cluster.member(1).kill();
    await cluster.member(2).kill();
    await eventually(() => sessions.state.status === 'lost', 15_000, 'session lost');
    await assertAllUnavailable(t, app, hosts);
    } finally {
      await cleanup();
    }
  });
});
