// The edges a hostile caller finds: names used as two kinds, aliasing names, bad options,
// calls after close, aborts on shared campaigns. Each of these broke on 0.1. Real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import {
  ElectionService,
  InvalidNameError,
  InvalidOptionsError,
  InvalidUsageError,
  LockAbortedError,
  LockService,
  NameInUseError,
  ShutdownError,
} from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { closeApps, createApp, delay, eventually, keysExceptMembers, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

describe('key spaces that cannot collide, names and options that cannot alias (real etcd)', () => {
  let client: Etcd3;
  before(() => {
    client = rawClient(etcd().endpoint);
  });
  after(async () => {
    await closeApps();
    client.close();
  });

  const app = (namespace: string, extra: Record<string, unknown> = {}) =>
    createApp({ hosts: etcd().endpoint, namespace, identity: 'ks', sessionTtl: 2, ...extra });

  const isNameInUse = (err: unknown) => err instanceof NameInUseError && err.code === 'NAME_IN_USE';

  it('withLock on the default election name is refused (0.1 reused the candidate key and deleted it on release)', async () => {
    const ns = uniqueNamespace('leader');
    const a = await app(ns, { election: 'leader' });
    const elections = a.get(ElectionService);
    await eventually(() => elections.isLeader(), 10_000, 'leads');
    const locks = a.get(LockService);
    await assert.rejects(locks.withLock('leader', async () => 'ran'), isNameInUse);
    await assert.rejects(locks.tryAcquire('leader'), isNameInUse, 'the try-variant throws too, it does not return null');
    await assert.rejects(locks.semaphore('leader', 2).tryAcquire(), isNameInUse);
    await assert.rejects(locks.readLock('leader'), isNameInUse);
    assert.equal(elections.isLeader(), true, 'leadership untouched');
    const leader = await elections.leader();
    assert.equal(leader?.key, elections.leadership()!.key, 'our candidate key is still there');
    await a.close();
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it('a mutex and a read lock of one name are not held at once; nor are two semaphore sizes', async () => {
    const ns = uniqueNamespace('kinds');
    const a = await app(ns);
    const locks = a.get(LockService);
    const mutex = await locks.acquire('x');
    await assert.rejects(locks.readLock('x', { timeout: 1_000 }), isNameInUse);
    await assert.rejects(locks.tryWriteLock('x'), isNameInUse);
    await assert.rejects(a.get(ElectionService).campaign('x'), isNameInUse);
    await mutex.release();
    const read = await locks.readLock('x'); // free again: the name may now be a read/write lock
    await read.release();
    const permit = await locks.semaphore('s', 1).acquire();
    await assert.rejects(locks.semaphore('s', 3).acquire(), isNameInUse, 'permits must agree within one application');
    await permit.release();
    await a.close();
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it('a claim that finds keys of another kind in its range is refused and leaves nothing behind', async () => {
    const ns = uniqueNamespace('foreign');
    const a = await app(ns);
    const b = await app(ns);
    const permit = await a.get(LockService).semaphore('e', 2).acquire(); // e/<lease>-0
    const keysBefore = await keysUnder(client, ns);
    await assert.rejects(b.get(ElectionService).campaign('e', { timeout: 2_000 }), isNameInUse);
    await assert.rejects(b.get(LockService).tryAcquire('e'), isNameInUse);
    assert.deepEqual(await keysUnder(client, ns), keysBefore, 'nothing of b was left');
    const writer = await a.get(LockService).writeLock('w'); // w/write/<lease>-n
    await assert.rejects(b.get(LockService).acquire('w', { timeout: 2_000 }), isNameInUse);
    await assert.rejects(b.get(LockService).semaphore('w', 1).acquire({ timeout: 2_000 }), isNameInUse);
    await writer.release();
    await permit.release();
    await Promise.all([a.close(), b.close()]);
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it('names with lone surrogates are refused, so "job\\ud800", "job\\udbff" and "job\\ufffd" can no longer alias', async () => {
    const ns = uniqueNamespace('utf16');
    const a = await app(ns);
    const locks = a.get(LockService);
    for (const bad of ['job\ud800', 'job\udbff', 'job\u200b', 'job\u202e', '\ufeffjob', 'job\u0085']) {
      await assert.rejects(locks.acquire(bad), InvalidNameError, JSON.stringify(bad));
      await assert.rejects(locks.tryAcquire(bad), InvalidNameError);
      await assert.rejects(a.get(ElectionService).campaign(bad), InvalidNameError);
      assert.throws(() => locks.semaphore(bad, 2), InvalidNameError);
    }
    const held = await locks.acquire('job\ufffd');
    await held.release();
    await assert.rejects(a.get(ElectionService).campaign(null as unknown as string), InvalidNameError, 'null is not "the default election"');
    await assert.rejects(a.get(ElectionService).leader(null as unknown as string), InvalidNameError);
    await a.close();
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it('a namespace that does not end with a separator fails bootstrap (app vs app1 would share keys)', async () => {
    await assert.rejects(app('app'), (err: unknown) => err instanceof InvalidOptionsError && /namespace/.test(err.message));
    await assert.rejects(app(uniqueNamespace('hosts'), { hosts: [`${etcd().endpoint}\n`] }), InvalidOptionsError);
  });

  it('timeouts: Infinity means none; above 2^31-1 ms is refused (0.1 fired after 1 ms)', async () => {
    const ns = uniqueNamespace('timeouts');
    const a = await app(ns);
    const b = await app(ns);
    const held = await a.get(LockService).acquire('t');
    for (const timeout of [2 ** 31, 2 ** 40, -5, NaN]) {
      await assert.rejects(b.get(LockService).acquire('t', { timeout }), InvalidUsageError, String(timeout));
      await assert.rejects(b.get(ElectionService).campaign('c', { timeout }), InvalidUsageError, String(timeout));
    }
    // Besides the two member records, only the held lock's key: the refused calls wrote nothing.
    assert.deepEqual(await keysExceptMembers(client, ns), [held.key], 'the refused calls wrote nothing');
    const waiting = b.get(LockService).acquire('t', { timeout: Infinity });
    await delay(300);
    await held.release();
    const second = await waiting;
    assert.ok(second.fencingToken > held.fencingToken);
    await second.release();
    await Promise.all([a.close(), b.close()]);
  });

  it('a proposal larger than one etcd request gets a typed error, not a raw gRPC one', async () => {
    const ns = uniqueNamespace('big');
    const a = await app(ns);
    const big = 'x'.repeat(2 * 1024 * 1024);
    await assert.rejects(a.get(ElectionService).campaign('e', { value: big }), (err: unknown) => err instanceof InvalidUsageError && /bytes/.test(err.message));
    await a.close();
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it("one caller's abort never cancels another caller's wait on a shared campaign", async () => {
    const ns = uniqueNamespace('shared');
    const a = await app(ns);
    const b = await app(ns);
    const leading = await a.get(ElectionService).campaign('e');
    const elections = b.get(ElectionService);
    const patient = elections.campaign('e');
    const controller = new AbortController();
    const impatient = elections.campaign('e', { signal: controller.signal });
    const timed = elections.campaign('e', { timeout: 200 });
    timed.catch(() => undefined); // rejects during the delay below; asserted after it
    await delay(300);
    controller.abort(new Error('gave up'));
    await assert.rejects(impatient, LockAbortedError);
    await assert.rejects(timed, { code: 'LOCK_TIMEOUT' });
    assert.equal((await keysUnder(client, `${ns}e/`)).length, 2, "b's candidate key stays for the patient caller");
    await leading.release();
    const won = await patient;
    assert.equal(won.isLeader(), true);
    await Promise.all([a.close(), b.close()]);
    assert.deepEqual(await keysUnder(client, ns), []);
  });

  it('calls after app.close() get ShutdownError, not EtcdUnavailableError', async () => {
    const ns = uniqueNamespace('closed');
    const a = await app(ns, { election: 'leader' });
    const locks = a.get(LockService);
    const elections = a.get(ElectionService);
    await a.close();
    const isShutdown = (err: unknown) => err instanceof ShutdownError && err.code === 'SHUTTING_DOWN';
    await assert.rejects(locks.acquire('x'), isShutdown);
    await assert.rejects(locks.tryAcquire('x'), isShutdown);
    await assert.rejects(locks.holder('x'), isShutdown);
    await assert.rejects(locks.semaphore('s', 2).acquire(), isShutdown);
    await assert.rejects(elections.campaign('e'), isShutdown);
    await assert.rejects(elections.leader(), isShutdown);
    await assert.rejects(elections.election('e').tryAcquire(), isShutdown);
  });
});
