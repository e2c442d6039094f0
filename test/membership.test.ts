// Membership on by default (issue 14): every application registers itself on its session lease
// (identity, JSON value, joined-at), again on every new session, and withdraws at shutdown;
// `membership: false` keeps 0.1's key footprint. The member-list watch opens only with members$.
// Shutdown while etcd is down does not wait on membership beyond one request timeout. Real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { performance } from 'node:perf_hooks';
import { after, afterEach, before, describe, it } from 'node:test';
import type { Etcd3 } from 'etcd3';
import { filter, firstValueFrom } from 'rxjs';
import { LockService, MembershipService, SessionService, type MemberInfo } from '../lib/index.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { etcdFixture, startEtcd, type EtcdServer } from './harness/etcd.js';
import { closeApps, createApp, eventually, keysUnder, leaseIds, membersPrefix, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

describe('membership is on by default (real etcd)', () => {
  let client: Etcd3;
  before(() => {
    client = rawClient(etcd().endpoint);
  });
  afterEach(closeApps);
  after(() => client.close());

  const app = (namespace: string, identity: string, extra: Record<string, unknown> = {}) =>
    createApp({ hosts: etcd().endpoint, namespace, identity, sessionTtl: 2, ...extra });

  it('registers every application on its session lease (one key), lists it, and opens no watch until members$', async () => {
    const ns = uniqueNamespace('members-default');
    const leasesBefore = new Set(await leaseIds(client));
    const a = await app(ns, 'a');
    const session = a.get(SessionService).state;
    const membership = a.get(MembershipService);
    assert.equal(membership.selfId, session.leaseHex, 'registered once bootstrap is over');

    // The default footprint of an idle application: its member record and nothing else.
    const key = `${membersPrefix(ns)}${session.leaseHex}`;
    assert.deepEqual(await keysUnder(client, ns), [key]);
    const stored = (await client.get(key).exec()).kvs[0]!;
    assert.equal(stored.lease, session.leaseId!.toString(), 'on the session lease');
    const record = JSON.parse(stored.value.toString('utf8')) as Record<string, unknown>;
    assert.deepEqual(Object.keys(record).sort(), ['identity', 'joinedAt', 'value']);
    assert.equal(record.identity, 'a');
    assert.equal(record.value, null);
    assert.ok(!Number.isNaN(Date.parse(String(record.joinedAt))), `joinedAt is a date: ${String(record.joinedAt)}`);

    // membership: false opts out: 0.1's footprint (no key at all while idle), yet it can read the list.
    const b = await app(ns, 'b', { membership: false });
    assert.equal(b.get(MembershipService).selfId, undefined);
    assert.deepEqual(await keysUnder(client, ns), [key], 'b wrote nothing');
    const idsOf = (list: MemberInfo[]) => list.map((m) => `${m.identity}:${m.id}`);
    assert.deepEqual(idsOf(await b.get(MembershipService).members()), [`a:${session.leaseHex}`]);

    // Registering and reading open no watch: a has opened as many as b (the session's anchor only).
    const watchesOf = (ctx: typeof a) => ctx.get(EtcdWatches);
    assert.equal(watchesOf(a).stats.opened, watchesOf(b).stats.opened, 'registration opened no watch');
    const openedBefore = watchesOf(a).stats.opened;
    const sizeBefore = watchesOf(a).size;
    const [self] = await membership.members();
    assert.equal(self?.leaseId, session.leaseId);
    assert.equal(watchesOf(a).stats.opened, openedBefore, 'members() is a read, not a watch');

    // members$ opens the one member-list watch, and follows joins and leaves.
    const c = await app(ns, 'c');
    const cId = c.get(MembershipService).selfId!;
    const both = await firstValueFrom(membership.members$.pipe(filter((list) => list.length === 2)));
    assert.deepEqual(idsOf(both), [`a:${session.leaseHex}`, `c:${cId}`], 'oldest first');
    assert.equal(watchesOf(a).stats.opened, openedBefore + 1, 'members$ opened one watch');
    assert.equal(watchesOf(a).size, sizeBefore + 1);
    const subscribedAgain = await firstValueFrom(membership.members$);
    assert.equal(subscribedAgain.length, 2, 'a second subscriber gets the replay');
    assert.equal(watchesOf(a).stats.opened, openedBefore + 1, 'and shares the watch');

    // join() still works with the opt-out.
    await b.get(MembershipService).join();
    const bId = b.get(MembershipService).selfId!;
    assert.equal(bId, b.get(SessionService).state.leaseHex);
    await firstValueFrom(membership.members$.pipe(filter((list) => list.some((m) => m.id === bId))));

    // Closing withdraws the record at once (not after the TTL).
    await c.close();
    const afterClose = await firstValueFrom(membership.members$.pipe(filter((list) => !list.some((m) => m.id === cId))));
    assert.deepEqual(idsOf(afterClose), [`a:${session.leaseHex}`, `b:${bId}`]);
    await Promise.all([a.close(), b.close()]);
    assert.deepEqual(await keysUnder(client, ns), [], 'nothing left once every app has closed');
    assert.deepEqual((await leaseIds(client)).filter((id) => !leasesBefore.has(id)), [], 'no lease left');
  });

  it('registers again on a new session, with no lock or election asking for one', async () => {
    const ns = uniqueNamespace('members-renew');
    const a = await app(ns, 'renew', { memberValue: { zone: 'eu-1' } });
    const membership = a.get(MembershipService);
    const first = membership.selfId!;
    const seen: Array<string | undefined> = [];
    const subscription = membership.selfId$.subscribe((id) => seen.push(id));
    try {
      // An operator revokes our lease: the session is lost, and membership alone makes a new one.
      await client.leaseClient.leaseRevoke({ ID: a.get(SessionService).state.leaseId!.toString() });
      await eventually(() => membership.selfId !== undefined && membership.selfId !== first, 10_000, 'registered on a new session');
      const second = membership.selfId!;
      assert.equal(second, a.get(SessionService).state.leaseHex);
      assert.deepEqual(await keysUnder(client, ns), [`${membersPrefix(ns)}${second}`], 'only the new record');
      const [record] = await membership.members();
      assert.deepEqual(record?.value, { zone: 'eu-1' }, 'the value is written again');
      assert.deepEqual(seen, [first, undefined, second], 'selfId$: registered, ended, registered again');
    } finally {
      subscription.unsubscribe();
    }
    await a.close();
    assert.deepEqual(await keysUnder(client, ns), []);
  });
});

describe('membership while etcd is down (real etcd)', () => {
  let server: EtcdServer | undefined;
  afterEach(closeApps);
  after(async () => {
    await server?.stop();
  });

  it('leave() and app.close() with etcd not answering are bounded by the request timeout; the records expire with the lease', async (t) => {
    server = await startEtcd({ name: 'members-down' });
    const ns = uniqueNamespace('members-down');
    const requestTimeout = 1_000;
    const ttl = 4;
    const options = { hosts: server.endpoint, namespace: ns, sessionTtl: ttl, connectTimeout: 1_000, requestTimeout };
    const a = await createApp({ ...options, identity: 'leaves' });
    const b = await createApp({ ...options, identity: 'closes' });
    const plain = await createApp({ ...options, identity: 'plain', membership: false });
    const held = await b.get(LockService).acquire('job');
    await plain.get(LockService).acquire('other-job');
    assert.ok(a.get(MembershipService).selfId && b.get(MembershipService).selfId);
    // SIGSTOP: etcd keeps its sockets but answers nothing, so every request runs into its deadline
    // (a SIGKILL would refuse connections at once and prove less).
    server.pause();
    // Both sessions are still alive on our side (no TTL has passed): leave() tries to delete the record.
    const leaving = performance.now();
    await a.get(MembershipService).leave().catch(() => undefined);
    const leaveTook = performance.now() - leaving;
    assert.ok(leaveTook < requestTimeout + 1_000, `leave() took ${leaveTook.toFixed(0)} ms with etcd not answering (request timeout ${requestTimeout} ms)`);
    assert.equal(a.get(MembershipService).selfId, undefined);
    // A plain app.close() (membership's leave() first, then the lock, then the session), and for
    // comparison (not asserted) the same close of an app with membership: false, at the same time.
    const timed = async (close: () => Promise<void>) => {
      const started = performance.now();
      await close();
      return performance.now() - started;
    };
    const [closeTook, plainTook] = await Promise.all([timed(() => b.close()), timed(() => plain.close())]);
    assert.ok(closeTook < 4 * requestTimeout + 2_000, `app.close() took ${closeTook.toFixed(0)} ms with etcd not answering`);
    assert.equal(held.signal.aborted, true);
    await a.close();
    t.diagnostic(
      `etcd not answering: leave() ${leaveTook.toFixed(0)} ms, app.close() ${closeTook.toFixed(0)} ms, ` +
        `with membership: false ${plainTook.toFixed(0)} ms (request timeout ${requestTimeout} ms)`,
    );

    // Whatever etcd does with the requests it gets on resuming, the records go (deleted, revoked, or
    // expired with the leases after the TTL).
    server.resume();
    const client = rawClient(server.endpoint);
    try {
      await eventually(async () => (await keysUnder(client, ns)).length === 0, (ttl + 5) * 1000, 'the records are gone');
    } finally {
      client.close();
    }
  });
});
