import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { etcdFixture, resolveEtcdBinaries } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import {
  InvalidNameError,
  LockAbortedError,
  LockService,
  LockTimeoutError,
  SessionService,
  currentLock,
} from '../lib/index.js';
import { closeApps, createApp, delay, eventually, keysExceptMembers, keysUnder, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';

describe('LockService (real etcd)', () => {
  const etcd = etcdFixture();
  const raw = () => rawClient(etcd().endpoint);
  afterEach(closeApps);

  async function lockApp(namespace: string, identity: string, extra: Record<string, unknown> = {}) {
    const app = await createApp({ hosts: etcd().endpoint, namespace, identity, sessionTtl: 2, ...extra });
    return { app, locks: app.get(LockService) };
  }

  it('excludes an unprotected read-modify-write across 3 OS processes: no lost update', async () => {
    const ns = uniqueNamespace('counter');
    const workers = ['w1', 'w2', 'w3'].map((id) =>
      spawnWorker({ use: ['contention'], hosts: etcd().endpoint, namespace: ns, identity: id, ttl: 5 }),
    );
    await Promise.all(workers.map((w) => w.waitForMessage('ready', 20_000)));
    const rounds = 15;
    for (const w of workers) w.send({ type: 'counter', name: 'counter', key: `${ns}value`, rounds });
    await Promise.all(workers.map((w) => w.waitForMessage('counted', 60_000)));
    const client = raw();
    try {
      assert.equal(await client.get(`${ns}value`).string(), String(rounds * workers.length));
    } finally {
      client.close();
      await Promise.all(workers.map((w) => w.kill('SIGTERM')));
    }
  });

  it('serves waiters in FIFO order across sessions, with strictly increasing fencing tokens', async () => {
    const ns = uniqueNamespace('fifo');
    const apps = await Promise.all(['a', 'b', 'c', 'd'].map((id) => lockApp(ns, id)));
    const client = raw();
    try {
      const first = await apps[0]!.locks.acquire('job');
      const order: string[] = [];
      const tokens: bigint[] = [first.fencingToken];
      const waits: Promise<void>[] = [];
      for (const [i, { locks }] of apps.slice(1).entries()) {
        waits.push(
          locks.acquire('job').then(async (handle) => {
            order.push(['b', 'c', 'd'][i]!);
            tokens.push(handle.fencingToken);
            await delay(20);
            await handle.release();
          }),
        );
        // Make arrival order unambiguous: wait until this waiter's key exists.
        await eventually(async () => (await keysUnder(client, `${ns}job/`)).length === i + 2, 5_000, 'waiter key');
      }
      await delay(100);
      assert.deepEqual(order, [], 'nobody else may get the lock while it is held');
      await first.release();
      await Promise.all(waits);
      assert.deepEqual(order, ['b', 'c', 'd']);
      for (let i = 1; i < tokens.length; i++) assert.ok(tokens[i]! > tokens[i - 1]!, `token ${tokens[i]} > ${tokens[i - 1]}`);
    } finally {
      client.close();
    }
  });

  it('queues contenders inside one process in FIFO order, one etcd key per session', async () => {
    const ns = uniqueNamespace('local');
    const { locks } = await lockApp(ns, 'solo');
    const client = raw();
    try {
      const order: number[] = [];
      let inside = 0;
      await Promise.all(
        [0, 1, 2, 3, 4].map((i) =>
          locks.withLock('local', async () => {
            inside++;
            assert.equal(inside, 1, 'two local holders at once');
            assert.equal((await keysUnder(client, `${ns}local/`)).length, 1);
            order.push(i);
            await delay(5);
            inside--;
          }),
        ),
      );
      assert.deepEqual(order, [0, 1, 2, 3, 4]);
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('tryAcquire returns a handle when free and null at once when held, leaving no key', async () => {
    const ns = uniqueNamespace('try');
    const a = await lockApp(ns, 'a');
    const b = await lockApp(ns, 'b');
    const client = raw();
    try {
      const handle = await a.locks.tryAcquire('t');
      assert.ok(handle);
      const started = Date.now();
      assert.equal(await b.locks.tryAcquire('t'), null);
      assert.ok(Date.now() - started < 2_000);
      assert.equal(await a.locks.tryAcquire('t'), null, 'held locally too');
      assert.deepEqual(await keysUnder(client, `${ns}t/`), [handle.key]);
      await handle.release();
      const second = await b.locks.tryAcquire('t');
      assert.ok(second && second.fencingToken > handle.fencingToken);
      await second.release();
    } finally {
      client.close();
    }
  });

  it('timeout and abort reject with typed errors and remove the waiter key', async () => {
    const ns = uniqueNamespace('timeout');
    const a = await lockApp(ns, 'a');
    const b = await lockApp(ns, 'b');
    const client = raw();
    try {
      const held = await a.locks.acquire('x');
      const started = Date.now();
      await assert.rejects(b.locks.acquire('x', { timeout: 300 }), (err: unknown) => {
        assert.ok(err instanceof LockTimeoutError);
        assert.equal(err.code, 'LOCK_TIMEOUT');
        assert.match(err.message, /"x"/);
        return true;
      });
      assert.ok(Date.now() - started >= 290);
      assert.deepEqual(await keysUnder(client, `${ns}x/`), [held.key], 'timed-out waiter key removed');

      const controller = new AbortController();
      const waiting = b.locks.acquire('x', { signal: controller.signal });
      await eventually(async () => (await keysUnder(client, `${ns}x/`)).length === 2, 5_000, 'waiter queued');
      controller.abort(new Error('caller gave up'));
      await assert.rejects(waiting, (err: unknown) => err instanceof LockAbortedError && (err.cause as Error).message === 'caller gave up');
      assert.deepEqual(await keysUnder(client, `${ns}x/`), [held.key], 'aborted waiter key removed');
      await held.release();
    } finally {
      client.close();
    }
  });

  it('withLock runs under the lock, exposes the context, always releases; skip and fail do not wait', async () => {
    const ns = uniqueNamespace('with');
    const a = await lockApp(ns, 'a');
    const b = await lockApp(ns, 'b');
    const client = raw();
    try {
      await assert.rejects(
        a.locks.withLock('w', async (lock) => {
          assert.equal(currentLock()?.fencingToken, lock.fencingToken);
          // Re-entering the same lock from inside does not deadlock.
          const inner = await a.locks.withLock('w', async (again) => again.fencingToken);
          assert.equal(inner, lock.fencingToken);
          throw new Error('boom');
        }),
        /boom/,
      );
      assert.deepEqual(await keysUnder(client, `${ns}w/`), [], 'released after a throw');
      const held = await a.locks.acquire('w');
      let ran = false;
      assert.equal(await b.locks.withLock('w', async () => { ran = true; }, { onLocked: 'skip' }), undefined);
      await assert.rejects(b.locks.withLock('w', async () => { ran = true; }, { onLocked: 'fail' }), { code: 'LOCK_HELD' });
      assert.equal(ran, false);
      await held.release();
      assert.equal(await b.locks.withLock('w', async () => 42, { onLocked: 'skip' }), 42);
    } finally {
      client.close();
    }
  });

  it('re-entry is per application: another app in the same process does not share the hold', async () => {
    const ns = uniqueNamespace('scope');
    const a = await lockApp(ns, 'a');
    const b = await lockApp(ns, 'b');
    await a.locks.withLock('x', async (outer) => {
      const again = await a.locks.acquire('x', { timeout: 1_000 });
      assert.equal(again.fencingToken, outer.fencingToken, 'same app re-enters');
      await again.release();
      assert.ok(outer.isHeld(), 'releasing the re-entered handle keeps the outer hold');
      await assert.rejects(b.locks.acquire('x', { timeout: 300 }), LockTimeoutError);
    });
  });

  it('holder() names the current holder; release is idempotent and never deletes a newer holder', async () => {
    const ns = uniqueNamespace('holder');
    const a = await lockApp(ns, 'alice');
    const b = await lockApp(ns, 'bob');
    const client = raw();
    try {
      assert.equal(await a.locks.holder('h'), null);
      const handle = await a.locks.acquire('h');
      const info = await b.locks.holder('h');
      assert.equal(info?.identity, 'alice');
      assert.equal(info?.fencingToken, handle.fencingToken);
      assert.equal(info?.key, handle.key);
      // Someone deletes our key behind our back; bob takes the lock; our late release must not touch bob's key.
      await client.delete().key(handle.key);
      const bobs = await b.locks.acquire('h');
      await Promise.all([handle.release(), handle.release()]);
      assert.deepEqual(await keysUnder(client, `${ns}h/`), [bobs.key]);
      assert.equal((await a.locks.holder('h'))?.identity, 'bob');
      await bobs.release();
    } finally {
      client.close();
    }
  });

  it('supports `await using`', async () => {
    const ns = uniqueNamespace('using');
    const { locks } = await lockApp(ns, 'u');
    const client = raw();
    try {
      {
        await using lock = await locks.acquire('u');
        assert.equal((await keysUnder(client, `${ns}u/`)).length, 1);
        assert.ok(lock.isHeld());
      }
      assert.deepEqual(await keysUnder(client, `${ns}u/`), []);
    } finally {
      client.close();
    }
  });

  it('rejects bad names with InvalidNameError and writes nothing', async () => {
    const ns = uniqueNamespace('names');
    const { locks } = await lockApp(ns, 'n');
    const client = raw();
    try {
      for (const bad of ['', 'a/b', 'tab\there', 'x'.repeat(201), ' padded', 42 as unknown as string]) {
        await assert.rejects(locks.acquire(bad), (err: unknown) => err instanceof InvalidNameError && err.code === 'INVALID_NAME');
        await assert.rejects(locks.tryAcquire(bad), InvalidNameError);
      }
      await assert.rejects(locks.acquire('ok', { timeout: -1 }), { code: 'INVALID_USAGE' });
      assert.deepEqual(await keysExceptMembers(client, ns), []);
    } finally {
      client.close();
    }
  });

  it('a SIGKILLed holder loses the lock to the next waiter within TTL + 2 s', async () => {
    const ns = uniqueNamespace('crash');
    const ttl = 2;
    const worker = spawnWorker({ use: ['locks'], hosts: etcd().endpoint, namespace: ns, identity: 'victim', ttl });
    await worker.waitForMessage('ready', 20_000);
    worker.send({ type: 'acquire', name: 'c' });
    const acquired = await worker.waitForMessage('acquired');
    const { locks } = await lockApp(ns, 'survivor');
    const waiting = locks.acquire('c');
    await delay(200);
    const killedAt = Date.now();
    await worker.kill('SIGKILL');
    const handle = await waiting;
    const elapsed = Date.now() - killedAt;
    assert.ok(elapsed <= (ttl + 2) * 1000, `took ${elapsed} ms`);
    assert.ok(handle.fencingToken > BigInt(String(acquired.token)));
    await handle.release();
  });

  it('a holder whose app closes gracefully hands over at once, and its process exits by itself', async () => {
    const ns = uniqueNamespace('graceful');
    const worker = spawnWorker({ use: ['locks'], hosts: etcd().endpoint, namespace: ns, identity: 'leaving', ttl: 10 });
    await worker.waitForMessage('ready', 20_000);
    worker.send({ type: 'acquire', name: 'g' });
    await worker.waitForMessage('acquired');
    const { locks } = await lockApp(ns, 'staying');
    const waiting = locks.acquire('g');
    await delay(200);
    const closedAt = Date.now();
    worker.send({ type: 'close' });
    const handle = await waiting;
    const elapsed = Date.now() - closedAt;
    assert.ok(elapsed < 1_500, `graceful handover took ${elapsed} ms (TTL is 10 s)`);
    const exit = await Promise.race([worker.exited, delay(8_000).then(() => 'still running' as const)]);
    assert.notEqual(exit, 'still running', 'the closed app kept its process alive');
    assert.equal((exit as { code: number | null }).code, 0);
    await handle.release();
  });

  describe('interop with etcdctl lock', () => {
    const etcdctlLock = (name: string, ...command: string[]) => {
      const { etcdctl } = resolveEtcdBinaries();
      const child = spawn(etcdctl, ['--endpoints', etcd().endpoint, 'lock', name, ...command], {
        env: { ...process.env, ETCDCTL_API: '3' },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let out = '';
      child.stdout.on('data', (d) => (out += d));
      return { child, output: () => out, exited: new Promise((r) => child.once('exit', r)) };
    };
    const children: Array<ReturnType<typeof etcdctlLock>> = [];
    after(() => children.forEach((c) => c.child.kill('SIGKILL')));

    it('etcdctl lock holder excludes LockService, and LockService gets it after etcdctl lets go', async () => {
      const ns = uniqueNamespace('ctl1');
      const { locks } = await lockApp(ns, 'ours');
      const holder = etcdctlLock(`${ns}shared`);
      children.push(holder);
      await eventually(() => holder.output().includes(`${ns}shared/`), 10_000, 'etcdctl acquired');
      assert.equal(await locks.tryAcquire('shared'), null);
      const info = await locks.holder('shared');
      assert.equal(info?.key, holder.output().trim().split('\n')[0]);
      const waiting = locks.acquire('shared', { timeout: 10_000 });
      await delay(300);
      holder.child.kill('SIGINT'); // etcdctl releases on interrupt
      const handle = await waiting;
      assert.ok(handle.fencingToken > info!.fencingToken);
      await handle.release();
    });

    it('LockService holder excludes etcdctl lock, which gets it after release', async () => {
      const ns = uniqueNamespace('ctl2');
      const { locks } = await lockApp(ns, 'ours');
      const handle = await locks.acquire('shared');
      const waiter = etcdctlLock(`${ns}shared`, 'echo', 'etcdctl-got-it');
      children.push(waiter);
      await delay(1_000);
      assert.equal(waiter.output(), '', 'etcdctl must wait while we hold the lock');
      await handle.release();
      await eventually(() => waiter.output().includes('etcdctl-got-it'), 10_000, 'etcdctl acquired after release');
      await waiter.exited;
    });
  });

  it('session loss aborts the holder signal before another client can acquire the lock', async () => {
    const ns = uniqueNamespace('partition');
    const proxy = await startProxy(etcd().endpoint);
    const client = raw();
    try {
      const cut = await lockApp(ns, 'cut-off', { hosts: proxy.endpoint, sessionTtl: 2, requestTimeout: 1_000 });
      const other = await lockApp(ns, 'other', { sessionTtl: 2 });
      const handle = await cut.locks.acquire('p');
      let abortedAt = 0;
      handle.signal.addEventListener('abort', () => (abortedAt = Date.now()));
      const states: string[] = [];
      cut.app.get(SessionService).state$.subscribe((s) => states.push(s.status));
      const waiting = other.locks.acquire('p', { timeout: 15_000 }).then((h) => ({ h, at: Date.now() }));
      await delay(200);
      proxy.setMode({ kind: 'blackhole' });
      const { h, at: acquiredAt } = await waiting;
      assert.ok(abortedAt > 0, 'holder signal never aborted');
      assert.ok(abortedAt < acquiredAt, `holder told at ${abortedAt}, other acquired at ${acquiredAt}`);
      assert.equal(handle.isHeld(), false);
      assert.ok(states.includes('lost'), `session states: ${states.join(',')}`);
      assert.equal(handle.signal.reason?.code, 'SESSION_LOST');
      await h.release();
      // Once etcd is reachable again, later calls get a new session. (The blackhole dropped
      // bytes mid-stream, so the old connections are dead: reset them as a healed network would.)
      proxy.setMode({ kind: 'reset' });
      await delay(100);
      proxy.setMode({ kind: 'pass' });
      const again = await cut.locks.acquire('p', { timeout: 10_000 });
      assert.ok(again.fencingToken > h.fencingToken);
      await again.release();
    } finally {
      client.close();
      await closeApps();
      await proxy.close();
    }
  });

  it('shuts down cleanly: releases held locks, revokes the lease, leaves no keys, leases, watches or timers', async () => {
    const ns = uniqueNamespace('shutdown');
    const client = raw();
    try {
      const before = new Set(await leaseIds(client));
      const a = await lockApp(ns, 'a');
      const b = await lockApp(ns, 'b');
      const held = await a.locks.acquire('s');
      const waiting = b.locks.acquire('s').then(() => 'acquired', (err: unknown) => err);
      await eventually(async () => (await keysUnder(client, `${ns}s/`)).length === 2, 5_000, 'waiter queued');
      await b.app.close();
      assert.equal((await waiting as { code?: string }).code, 'SHUTTING_DOWN');
      await a.app.close();
      assert.equal(held.signal.aborted, true);
      assert.deepEqual(await keysUnder(client, ns), []);
      const leftover = (await leaseIds(client)).filter((id) => !before.has(id));
      assert.deepEqual(leftover, []);
      await assert.rejects(a.locks.acquire('s'), { code: 'SHUTTING_DOWN' });
    } finally {
      client.close();
    }
  });
});
