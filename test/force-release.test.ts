// LockService.forceRelease (lib/lock/force-release.ts) against a real etcd: deletes only the
// current holder's key (guarded by its create revision), the next waiter acquires, who did it is
// logged at warn, nothing is left behind.
import 'reflect-metadata';
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Module, type LoggerService } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CoordinationModule, HoldLostError, InvalidUsageError, LockService } from '../lib/index.js';
import { Test } from '@nestjs/testing';
import { CoordinationTestingModule } from '../lib/testing/index.js';
import { etcdFixture } from './harness/etcd.js';
import { closeApps, createApp, delay, eventually, keysUnder, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';

describe('LockService.forceRelease (real etcd)', () => {
  const etcd = etcdFixture();
  afterEach(closeApps);

  /** An app whose warn logs are captured. */
  async function operatorApp(ns: string, identity: string) {
    const warnings: string[] = [];
    const logger: LoggerService = { log: () => {}, error: () => {}, warn: (message: unknown) => warnings.push(String(message)) };
    class OperatorModule {}
    Module({ imports: [CoordinationModule.forRoot({ hosts: etcd().endpoint, namespace: ns, identity, election: false })] })(OperatorModule);
    const app = await NestFactory.createApplicationContext(OperatorModule, { logger });
    return { app, locks: app.get(LockService), warnings };
  }

  it('deletes the holder of a mutex (another process\'s), the next waiter acquires; guarded by revision; logs who did it', async () => {
    const ns = uniqueNamespace('force');
    const client = rawClient(etcd().endpoint);
    const leasesBefore = new Set(await leaseIds(client));
    const a = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'holder-a', sessionTtl: 5 });
    const b = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'waiter-b', sessionTtl: 5 });
    const operator = await operatorApp(ns, 'operator-o');
    try {
      const held = await a.get(LockService).acquire('job');
      const next = b.get(LockService).acquire('job');
      await eventually(async () => (await keysUnder(client, `${ns}job/`)).length === 2, 10_000, 'waiter key');

      assert.equal(await operator.locks.forceRelease('job', { revision: held.fencingToken + 1000n }), null, 'not at that revision: nothing deleted');
      assert.equal((await keysUnder(client, `${ns}job/`)).length, 2);

      const released = await operator.locks.forceRelease('job', { revision: held.fencingToken });
      assert.ok(released);
      assert.deepEqual([released.key, released.identity, released.revision, released.name], [held.key, 'holder-a', held.fencingToken, 'job']);
      assert.equal(typeof released.leaseId, 'bigint');
      assert.ok(operator.warnings.some((w) => w.includes('force release by "operator-o"') && w.includes(held.key) && w.includes('"holder-a"')), operator.warnings.join('\n'));
      const second = await next;
      assert.ok(second.fencingToken > held.fencingToken);
      assert.deepEqual(await keysUnder(client, `${ns}job/`), [second.key], 'only the holder was deleted');
      // A second call names the new holder: the old revision no longer matches anything.
      assert.equal(await operator.locks.forceRelease('job', { revision: held.fencingToken }), null);
      assert.equal(await operator.locks.forceRelease('free'), null, 'nothing held: null');
      await second.release();
      await held.release(); // releasing a force-released hold is harmless
      await Promise.all([a.close(), b.close(), operator.app.close()]);
      assert.deepEqual(await keysUnder(client, ns), []);
      await eventually(async () => (await leaseIds(client)).every((id) => leasesBefore.has(id)), 10_000, 'no lease left');
    } finally {
      await operator.app.close().catch(() => undefined);
      client.close();
    }
  });

  it('read/write locks and semaphores: refused without { key }; with it, exactly that key; bad input is a typed error', async () => {
    const ns = uniqueNamespace('force-kinds');
    const client = rawClient(etcd().endpoint);
    try {
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'k' });
      const locks = app.get(LockService);
      const r1 = await locks.readLock('cfg');
      const r2 = await locks.readLock('cfg');
      await assert.rejects(locks.forceRelease('cfg'), (err: unknown) => err instanceof InvalidUsageError && /read\/write lock key.*\{ key \}/.test(err.message));
      const gone = await locks.forceRelease('cfg', { key: r1.key });
      assert.equal(gone?.key, r1.key);
      assert.deepEqual(await keysUnder(client, `${ns}cfg/`), [r2.key]);
      const permit = await locks.semaphore('pool', 2).acquire();
      await assert.rejects(locks.forceRelease('pool'), /semaphore key/);
      assert.equal((await locks.forceRelease('pool', { key: permit.key }))?.key, permit.key);
      await assert.rejects(locks.forceRelease('cfg', { key: `${ns}other/x` }), /not one of this name's keys/);
      await assert.rejects(locks.forceRelease('bad/name'), { code: 'INVALID_NAME' });
      await assert.rejects(locks.forceRelease('cfg', { revision: 5 as unknown as bigint }), InvalidUsageError);
      await client.put(`${ns}data/x`).value('1');
      await assert.rejects(locks.forceRelease('data'), /not a lock key/);
      assert.equal(await client.get(`${ns}data/x`).string(), '1', 'a foreign key is never deleted');
      await Promise.all([r1.release(), r2.release(), permit.release()]);
      await client.delete().prefix(ns);
    } finally {
      client.close();
    }
  });

  it('works under the testing kit too (the in-memory store answers the same requests)', async () => {
    const moduleRef = await Test.createTestingModule({ imports: [CoordinationTestingModule.forRoot({ identity: 'fake' })] }).compile();
    moduleRef.useLogger(false);
    await moduleRef.init();
    try {
      const locks = moduleRef.get(LockService);
      const held = await locks.acquire('job');
      const released = await locks.forceRelease('job');
      assert.deepEqual([released?.key, released?.identity, released?.revision], [held.key, 'fake', held.fencingToken]);
      assert.equal(await locks.forceRelease('job'), null);
      const permit = await locks.semaphore('pool', 2).acquire();
      assert.equal((await locks.forceRelease('pool', { key: permit.key }))?.key, permit.key);
      await Promise.all([held.release(), permit.release()]);
    } finally {
      await moduleRef.close();
    }
  });

  it('the holder is told first: its signal aborts (HoldLostError naming who) before the next waiter acquires', async () => {
    const ns = uniqueNamespace('force-signal');
    const a = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'a' });
    const b = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'b' });
    const operator = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'o' });
    const held = await a.get(LockService).acquire('job');
    let abortedAt = 0;
    held.signal.addEventListener('abort', () => (abortedAt = performance.now()), { once: true });
    let acquiredAt = 0;
    const next = b.get(LockService).acquire('job').then((hold) => ((acquiredAt = performance.now()), hold));
    await delay(300); // b queued behind a
    const released = await operator.get(LockService).forceRelease('job');
    assert.equal(released?.cooperative, true, 'the holder deleted its key itself');
    const nextHold = await next;
    assert.ok(abortedAt > 0 && abortedAt <= acquiredAt, `holder told at ${abortedAt.toFixed(1)}, next acquired at ${acquiredAt.toFixed(1)}`);
    assert.equal(held.isHeld(), false);
    assert.ok(held.signal.reason instanceof HoldLostError);
    assert.match((held.signal.reason as Error).message, /force-released by "o"/);
    await nextHold.release();
    // A holder that does not answer (here: a raw etcd3 key, as etcdctl lock leaves) is deleted after the grace period.
    const client = rawClient(etcd().endpoint);
    try {
      const lease = client.lease(30, { autoKeepAlive: false });
      const leaseId = BigInt(await lease.grant());
      await lease.put(`${ns}stuck/${leaseId.toString(16)}`).value('');
      const t0 = performance.now();
      const forced = await operator.get(LockService).forceRelease('stuck', { graceMs: 300 });
      assert.equal(forced?.cooperative, false);
      assert.ok(performance.now() - t0 >= 300, 'waited for the grace period');
      assert.deepEqual(await keysUnder(client, `${ns}stuck/`), []);
      await lease.revoke();
    } finally {
      client.close();
    }
  });
});
