import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Injectable } from '@nestjs/common';
import { etcdFixture } from './harness/etcd.js';
import {
  InvalidNameError,
  InvalidUsageError,
  LockAbortedError,
  LockHeldError,
  LockService,
  LockTimeoutError,
  WithLock,
  currentLock,
  type LockHandle,
} from '../lib/index.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { closeApps, createApp, delay, eventually, keysExceptMembers, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';

/** Shared by every instance of Jobs (two apps in this process). */
const jobs = { inside: 0, max: 0, gate: Promise.resolve() };

@Injectable()
class Jobs {
  @WithLock('jobs', { permits: 2 })
  async hold(): Promise<bigint> {
    jobs.inside++;
    jobs.max = Math.max(jobs.max, jobs.inside);
    await jobs.gate;
    jobs.inside--;
    return currentLock('jobs')!.fencingToken;
  }

  @WithLock('jobs', { permits: 2, onLocked: 'skip' })
  async ifFree(): Promise<string> {
    return 'ran';
  }

  @WithLock('jobs', { permits: 2, onLocked: 'fail' })
  async orFail(): Promise<string> {
    return 'ran';
  }

  /** Calls another method bounded by the same semaphore: re-enters instead of taking a second permit. */
  @WithLock('solo', { permits: 1 })
  async outer(): Promise<[bigint, bigint]> {
    return [currentLock('solo')!.fencingToken, await this.inner()];
  }

  @WithLock('solo', { permits: 1 })
  async inner(): Promise<bigint> {
    return currentLock('solo')!.fencingToken;
  }
}

describe('semaphore (real etcd)', () => {
  const etcd = etcdFixture();
  const raw = () => rawClient(etcd().endpoint);
  afterEach(closeApps);

  async function lockApp(namespace: string, identity: string, extra: Record<string, unknown> = {}) {
    const app = await createApp({ hosts: etcd().endpoint, namespace, identity, sessionTtl: 2, ...extra });
    return { app, locks: app.get(LockService) };
  }

  /** Marks a rejection as handled now (asserted later), so a slow test cannot turn it into an unhandled rejection. */
  const later = <T>(promise: Promise<T>): Promise<T> => {
    promise.catch(() => undefined);
    return promise;
  };

  it('never exceeds its permits under contention from 3 OS processes (CAS-counted in etcd)', async () => {
    const ns = uniqueNamespace('contend');
    const permits = 3;
    const workers = ['p1', 'p2', 'p3'].map((id) => spawnWorker({ use: ['contention'], hosts: etcd().endpoint, namespace: ns, identity: id, ttl: 5 }));
    const client = raw();
    try {
      await Promise.all(workers.map((w) => w.waitForMessage('ready', 20_000)));
      for (const w of workers) w.send({ type: 'contend', name: 'pool', permits, key: `${ns}inside`, rounds: 8, parallel: 3 });
      const results = await Promise.all(workers.map((w) => w.waitForMessage((m) => m.type === 'contended' || m.type === 'error', 60_000)));
      for (const result of results) {
        assert.equal(result.type, 'contended', JSON.stringify(result));
        assert.equal(result.runs, 24);
        assert.ok(Number(result.maxInside) <= permits, `a holder saw ${result.maxInside} holders inside (permits ${permits})`);
      }
      const max = Math.max(...results.map((r) => Number(r.maxInside)));
      assert.ok(max >= 2, `permits were never shared (max inside ${max})`);
      assert.equal(await client.get(`${ns}inside`).string(), '0');
      assert.deepEqual(await keysUnder(client, `${ns}pool/`), []);
    } finally {
      client.close();
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    }
  });

  it('grants permits in FIFO order with increasing fencing tokens; tryAcquire is null when full; a double hand-over cascades', async () => {
    const ns = uniqueNamespace('fifo');
    const apps = await Promise.all(['a', 'b', 'c'].map((id) => lockApp(ns, id)));
    const sem = (i: number) => apps[i % apps.length]!.locks.semaphore('sem', 2);
    const client = raw();
    try {
      const h1 = await sem(0).acquire();
      const h2 = await sem(1).tryAcquire();
      assert.ok(h2, 'a second permit is free');
      assert.equal(h1.mode, 'permit');
      assert.match(h1.key, new RegExp(`^${ns}sem/[0-9a-f]+-[0-9a-z]+$`));
      assert.ok(h2.fencingToken > h1.fencingToken);
      assert.equal(await sem(2).tryAcquire(), null, 'full');
      assert.equal(await sem(0).tryAcquire(), null, 'full for the holder process too');
      assert.equal((await keysUnder(client, `${ns}sem/`)).length, 2, 'a refused try leaves no key');

      const log: string[] = [];
      const handles = new Map<string, LockHandle>();
      const waits: Promise<void>[] = [];
      for (const [i, label] of ['w1', 'w2', 'w3', 'w4', 'w5'].entries()) {
        waits.push(sem(i).acquire().then((h) => { log.push(label); handles.set(label, h); }));
        await eventually(async () => (await keysUnder(client, `${ns}sem/`)).length === i + 3, 5_000, `${label} queued`);
      }
      assert.equal(await sem(1).tryAcquire(), null, 'no try-acquire past waiters');
      await delay(150);
      assert.deepEqual(log, []);

      // Two permits come back at once: the first waiter takes one and its touch wakes the second.
      await Promise.all([h1.release(), h2.release()]);
      await eventually(() => log.length === 2, 5_000, 'w1 and w2 after the double release');
      assert.deepEqual([...log].sort(), ['w1', 'w2']);
      await delay(150);
      assert.equal(log.length, 2, 'never more than 2 holders');
      await handles.get('w2')!.release();
      await eventually(() => log.length === 3, 5_000, 'w3');
      await handles.get('w1')!.release();
      await eventually(() => log.length === 4, 5_000, 'w4');
      await handles.get('w3')!.release();
      await Promise.all(waits);
      assert.deepEqual(log.slice(2), ['w3', 'w4', 'w5']);
      const tokens = [h1, h2, ...['w1', 'w2', 'w3', 'w4', 'w5'].map((l) => handles.get(l)!)].map((h) => h.fencingToken);
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, 'tokens follow arrival order');
      // Release is idempotent and never deletes anyone else's key.
      const w4 = handles.get('w4')!;
      await Promise.all([w4.release(), w4.release(), w4.release()]);
      assert.deepEqual(await keysUnder(client, `${ns}sem/`), [handles.get('w5')!.key]);
      {
        await using extra = await sem(2).acquire();
        assert.ok(extra.isHeld());
        assert.equal((await keysUnder(client, `${ns}sem/`)).length, 2);
      }
      await handles.get('w5')!.release();
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('timeout and abort reject with typed errors and leave no key, even from the middle of the queue', async () => {
    const ns = uniqueNamespace('cancel');
    const [a, b] = await Promise.all(['a', 'b'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const holder = await a!.locks.semaphore('one', 1).acquire();
      const sem = b!.locks.semaphore('one', 1);
      await assert.rejects(sem.acquire({ timeout: 300 }), (err: unknown) => err instanceof LockTimeoutError && err.code === 'LOCK_TIMEOUT');
      assert.deepEqual(await keysUnder(client, `${ns}one/`), [holder.key], 'timed-out waiter key removed');

      // Queue, in arrival order: w0 (the first waiter, watching the prefix) <- w1 <- w2 <- w3 (each watching its predecessor).
      const controllers = [0, 1, 2, 3].map(() => new AbortController());
      const order: number[] = [];
      const waiters: Array<Promise<LockHandle>> = [];
      for (const [i, c] of controllers.entries()) {
        waiters.push(later(sem.acquire({ signal: c.signal }).then((h) => { order.push(i); return h; })));
        await eventually(async () => (await keysUnder(client, `${ns}one/`)).length === i + 2, 5_000, `w${i} queued`);
      }
      // The first waiter and one in the middle leave: w1 must become the first waiter, w3 must follow w1.
      controllers[0]!.abort(new Error('first gave up'));
      controllers[2]!.abort(new Error('third gave up'));
      await assert.rejects(waiters[0]!, (err: unknown) => err instanceof LockAbortedError && (err.cause as Error).message === 'first gave up');
      await assert.rejects(waiters[2]!, LockAbortedError);
      assert.equal((await keysUnder(client, `${ns}one/`)).length, 3, 'aborted waiter keys removed');
      await holder.release();
      const next = await waiters[1]!;
      await delay(150);
      assert.deepEqual(order, [1], 'one permit, one holder');
      await next.release();
      const last = await waiters[3]!;
      assert.deepEqual(order, [1, 3]);
      assert.ok(last.fencingToken > next.fencingToken);

      assert.equal(await sem.withPermit(async () => 'ran', { onLocked: 'skip' }), undefined);
      await assert.rejects(sem.withPermit(async () => 'ran', { onLocked: 'fail' }), (err: unknown) =>
        err instanceof LockHeldError && err.code === 'LOCK_HELD' && /no free permit \(of 1\)/.test(err.message),
      );
      assert.deepEqual(await keysUnder(client, `${ns}one/`), [last.key]);
      await last.release();
      assert.equal(await sem.withPermit(async (permit) => permit.mode), 'permit');
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it("a SIGKILLed holder's permit comes back after the session TTL", async () => {
    const ns = uniqueNamespace('crash');
    const ttl = 2;
    const worker = spawnWorker({ use: ['locks'], hosts: etcd().endpoint, namespace: ns, identity: 'victim', ttl });
    const client = raw();
    try {
      await worker.waitForMessage('ready', 20_000);
      worker.send({ type: 'acquire', name: 'c', permits: 2, id: 'p' });
      const held = await worker.waitForMessage('acquired');
      const { locks } = await lockApp(ns, 'survivor');
      const sem = locks.semaphore('c', 2);
      const mine = await sem.acquire();
      const waiting = sem.acquire();
      await eventually(async () => (await keysUnder(client, `${ns}c/`)).length === 3, 5_000, 'waiter queued');
      const killedAt = Date.now();
      await worker.kill('SIGKILL');
      const handle = await waiting;
      const elapsed = Date.now() - killedAt;
      assert.ok(elapsed <= (ttl + 2) * 1000, `took ${elapsed} ms`);
      assert.ok(handle.fencingToken > BigInt(String(held.token)));
      assert.ok(!(await keysUnder(client, `${ns}c/`)).includes(String(held.key)), 'the crashed holder key expired');
      await Promise.all([mine.release(), handle.release()]);
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
      await worker.kill('SIGKILL');
    }
  });

  it('@WithLock({ permits }) bounds a method cluster-wide (two apps), skips/fails when full, and re-enters', async () => {
    const ns = uniqueNamespace('decorated');
    const client = raw();
    try {
      const apps = await Promise.all(
        ['d1', 'd2'].map((identity) => createApp({ hosts: etcd().endpoint, namespace: ns, identity, sessionTtl: 2, providers: [Jobs] })),
      );
      const [j1, j2] = apps.map((app) => app.get(Jobs));
      let open!: () => void;
      Object.assign(jobs, { inside: 0, max: 0, gate: new Promise<void>((r) => (open = r)) });
      const runs = [j1!.hold(), j2!.hold(), j1!.hold(), j2!.hold(), j1!.hold()];
      await eventually(() => jobs.inside === 2, 10_000, 'two runs inside');
      await delay(200);
      assert.equal(jobs.inside, 2, 'a third run must wait for a permit');
      assert.equal(await j1!.ifFree(), undefined, "onLocked 'skip' does not run when full");
      await assert.rejects(j2!.orFail(), LockHeldError);
      open();
      const tokens = await Promise.all(runs);
      assert.equal(jobs.max, 2);
      assert.equal(new Set(tokens).size, 5);
      assert.equal(await j1!.ifFree(), 'ran');
      const [outer, inner] = await j2!.outer();
      assert.equal(inner, outer, 'a nested call re-enters the permit instead of deadlocking');
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('wakes O(1) waiters per hand-over (no herd): at most 2 watch wake-ups per permit handed on', async () => {
    const ns = uniqueNamespace('herd');
    const [a, b] = await Promise.all(['a', 'b'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const holder = await a!.locks.semaphore('h', 1).acquire();
      const sem = b!.locks.semaphore('h', 1);
      const n = 6;
      const chain: Promise<void>[] = [];
      for (let i = 0; i < n; i++) {
        chain.push(sem.acquire().then((h) => h.release()));
        await eventually(async () => (await keysUnder(client, `${ns}h/`)).length === i + 2, 5_000, 'queued');
      }
      await delay(100);
      // Waits woken by a watch event, in both applications (what 0.1 counted as semaphoreDebug.wakeups).
      const wakeupsNow = () => a!.app.get(EtcdWatches).stats.wakeups + b!.app.get(EtcdWatches).stats.wakeups;
      const before = wakeupsNow();
      await holder.release();
      await Promise.all(chain);
      const semaphoreDebug = { wakeups: wakeupsNow() - before };
      // A herd (every waiter watching the prefix) would wake n + (n-1) + ... = 21 times.
      assert.ok(semaphoreDebug.wakeups <= 2 * n, `${semaphoreDebug.wakeups} wake-ups for ${n} hand-overs`);
      assert.ok(semaphoreDebug.wakeups >= n, `${semaphoreDebug.wakeups} wake-ups for ${n} hand-overs`);
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('validates names and permits; shutdown releases held permits', async () => {
    const ns = uniqueNamespace('valid');
    const { app, locks } = await lockApp(ns, 'v');
    const client = raw();
    try {
      for (const bad of [0, -1, 1.5, 10_001, Number.NaN, '2' as unknown as number]) {
        assert.throws(() => locks.semaphore('s', bad), (err: unknown) => err instanceof InvalidUsageError && /permits must be an integer from 1 to 10000/.test(err.message));
      }
      for (const bad of ['', 'a/b', ' s']) assert.throws(() => locks.semaphore(bad, 1), InvalidNameError);
      assert.throws(() => WithLock('x', { permits: 0 }), InvalidUsageError);
      assert.throws(() => WithLock('x', { permits: 2, mode: 'read' }), InvalidUsageError);
      await assert.rejects(locks.semaphore('s', 1).acquire({ timeout: -5 }), { code: 'INVALID_USAGE' });
      const held = await locks.semaphore('s', 10_000).acquire();
      assert.deepEqual(await keysUnder(client, `${ns}s/`), [held.key]);
      await app.close();
      assert.equal(held.signal.aborted, true);
      assert.deepEqual(await keysUnder(client, ns), []);
    } finally {
      client.close();
    }
  });
});
