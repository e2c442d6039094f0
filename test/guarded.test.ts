// Guarded writes: a write happens only if the hold is still ours, checked by etcd in the same
// transaction (Go's Mutex.IsOwner()). Real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { ElectionService, HoldLostError, LockService, SessionLostError } from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

describe('guarded writes (real etcd)', () => {
  after(() => closeApps());

  it('accepted while held; refused (nothing written, hold ended) once someone else deleted our key', async () => {
    const ns = uniqueNamespace('guarded');
    const client = rawClient(etcd().endpoint);
    try {
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'g' });
      const lock = await app.get(LockService).acquire('job');
      await lock.guardedPut(`${ns}data`, 'v1');
      assert.equal(await client.get(`${ns}data`).string(), 'v1');
      // The comparison works in the user's own etcd3 transactions too.
      const own = await client.kv.txn({ compare: [lock.ownershipCompare()], success: [{ request_put: { key: Buffer.from(`${ns}data`), value: Buffer.from('v2') } }], failure: [] });
      assert.equal(own.succeeded, true);

      await client.delete().key(lock.key); // an operator's etcdctl del
      await assert.rejects(lock.guardedPut(`${ns}data`, 'stale'), (err: unknown) => err instanceof HoldLostError && err.code === 'HOLD_LOST');
      assert.equal(await client.get(`${ns}data`).string(), 'v2', 'the refused write changed nothing');
      assert.equal(lock.isHeld(), false);
      assert.ok(lock.signal.reason instanceof HoldLostError);
      await assert.rejects(lock.guardedDelete(`${ns}data`), HoldLostError);

      // Leadership and permits are holds too.
      const leadership = await app.get(ElectionService).campaign('e');
      await leadership.guardedDelete(`${ns}data`);
      assert.equal(await client.get(`${ns}data`).string(), null);
      const permit = await app.get(LockService).semaphore('s', 2).acquire();
      await permit.guardedPut(`${ns}data`, 'p');
      await permit.release();
      await assert.rejects(permit.guardedPut(`${ns}data`, 'late'), (err: unknown) => (err as { code?: string }).code === 'LOCK_RELEASED');
      await leadership.release();
      await app.close();
      await client.delete().prefix(ns);
    } finally {
      client.close();
    }
  });

  it('refused after the session was lost (link cut past the TTL)', async () => {
    const ns = uniqueNamespace('guarded-loss');
    const proxy = await startProxy(etcd().endpoint);
    const client = rawClient(etcd().endpoint);
    try {
      const app = await createApp({ hosts: proxy.endpoint, namespace: ns, identity: 'g', sessionTtl: 2, requestTimeout: 1_000 });
      const lock = await app.get(LockService).acquire('job');
      await lock.guardedPut(`${ns}data`, 'v1');
      proxy.setMode({ kind: 'blackhole' });
      await eventually(() => !lock.isHeld(), 10_000, 'the hold ends at the session deadline');
      await assert.rejects(lock.guardedPut(`${ns}data`, 'stale'), SessionLostError);
      proxy.setMode({ kind: 'reset' });
      await delay(100);
      proxy.setMode({ kind: 'pass' });
      assert.equal(await client.get(`${ns}data`).string(), 'v1');
      await app.close();
      await client.delete().prefix(ns);
    } finally {
      client.close();
      await proxy.close();
    }
  });
});
