// etcd's history lost: the data dir wiped and etcd restarted under the same client URLs.
// Revisions start again low; 0.1 noticed nothing and handed out token 4 after 604.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { rmSync } from 'node:fs';
import { after, describe, it } from 'node:test';
import { EtcdHistoryResetError, LockService, SessionLostError, SessionService, type SessionState } from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { closeApps, createApp, eventually, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

describe('etcd history lost (real etcd, wiped and restarted)', () => {
  after(() => closeApps());

  it('gives up every hold, says so with EtcdHistoryResetError, and fencingEpoch keeps tokens growing', async () => {
    const ns = uniqueNamespace('wipe');
    const client = rawClient(etcd().endpoint);
    try {
      // Push the revision up, as a long-running cluster would have it.
      for (let i = 0; i < 60; i++) await client.put(`${ns}filler-${i % 5}`).value(String(i));
      const app = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'w', sessionTtl: 3, requestTimeout: 1_000, connectTimeout: 10_000 });
      const states: SessionState[] = [];
      app.get(SessionService).state$.subscribe((s) => states.push(s));
      const locks = app.get(LockService);
      const before = await locks.acquire('x');
      assert.ok(before.fencingToken > 60n, `token ${before.fencingToken}`);

      await etcd().kill('SIGKILL');
      rmSync(etcd().dataDir, { recursive: true, force: true });
      await etcd().restart();

      await eventually(() => before.signal.aborted, 15_000, 'the old hold is given up');
      assert.ok(before.signal.reason instanceof SessionLostError, String(before.signal.reason));
      assert.equal(before.isHeld(), false);

      // Our next claim is in the new history: the reset is noticed and reported.
      const after = await locks.acquire('x', { timeout: 20_000 });
      assert.ok(after.fencingToken < before.fencingToken, `revisions restarted: ${after.fencingToken} after ${before.fencingToken}`);
      const reset = states.find((s) => s.status === 'lost' && /history/.test(s.reason ?? ''));
      assert.ok(reset, `a session loss says the history was lost: ${JSON.stringify(states.map((s) => [s.status, s.reason]))}`);
      await after.release();
      await app.close();

      // The operator raises the fencing epoch: tokens grow again across the reset.
      const raised = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'w2', fencingEpoch: 1 });
      const next = await raised.get(LockService).acquire('x');
      assert.ok(next.fencingToken > before.fencingToken, `${next.fencingToken} > ${before.fencingToken}`);
      assert.equal(next.fencingToken >> 48n, 1n);
      assert.equal((await raised.get(LockService).holder('x'))?.fencingToken, next.fencingToken);
      await next.release();
      await raised.close();
    } finally {
      client.close();
    }
  });

  it('EtcdHistoryResetError is a SessionLostError with its own code', () => {
    const err = new EtcdHistoryResetError(['h:1'], 'm', { previousClusterId: 'a', clusterId: 'b', previousRevision: 9n, revision: 2n });
    assert.ok(err instanceof SessionLostError);
    assert.equal(err.code, 'ETCD_HISTORY_RESET');
  });
});
