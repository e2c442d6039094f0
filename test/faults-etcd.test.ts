// Fault injection on etcd itself: a single server restarted (gracefully, and crashed with
// an outage longer than the session TTL) while locks are held and waiters wait; a
// 3-member cluster losing a follower and then its raft leader, each restarted.
// Invariants are checked from outside the processes (see test/support/faults-observer.ts).
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from './harness/etcd.js';
import type { NodeProcess } from './harness/processes.js';
import { delay, eventually, rawClient } from './support/apps.js';
import { assertNoStrays, FaultFleet, initFence, leaseSet, scenarioPrefixes, summary } from './support/faults-observer.js';

const TTL = 3;
/** After etcd is back, how long every worker may take to hold the lock again (generous: CI is slow). */
const RECOVERY_MS = 25_000;

describe('faults: etcd restarts and cluster members (real etcd)', () => {
  let fleet: FaultFleet | undefined;
  let server: EtcdServer | undefined;
  let cluster: EtcdCluster | undefined;
  afterEach(async () => {
    await fleet?.killAll();
    await server?.stop();
    await cluster?.stop();
    fleet = server = cluster = undefined;
  });

  it('etcd restarted (graceful, then crashed and down longer than the TTL) while locks are held and waiters wait', async (t) => {
    server = await startEtcd();
    const etcd = server;
    const { ns, res } = scenarioPrefixes('restart');
    let client = rawClient(etcd.endpoint);
    try {
      await initFence(client, res, ['r', 'long', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      client.close();
      fleet = new FaultFleet({ hosts: [etcd.endpoint], namespace: ns, ttl: TTL, election: 'leader', resource: { hosts: [etcd.endpoint], prefix: res } });
      const workers = await fleet.startAll(['a', 'b', 'c']);
      for (const w of workers) w.send({ type: 'loop', name: 'r', holdMs: 300, gapMs: 30 });
      // A second lock held for a long time by `a` (`b` waits for it): it is held when etcd goes down.
      const [a, b] = workers as [NodeProcess, NodeProcess, NodeProcess];
      a.send({ type: 'loop', name: 'long', holdMs: 60_000, gapMs: 30 });
      await a.waitForMessage((m) => m.type === 'enter' && m.name === 'long', 20_000);
      b.send({ type: 'loop', name: 'long', holdMs: 300, gapMs: 30 });
      await fleet.waitForEnters(workers, 'r', 0, 20_000);
      await fleet.waitForLeader(0, 10_000);

      // 1. Graceful restart (SIGTERM, start again on the same data): shorter than the TTL.
      const restartAt = Date.now();
      await etcd.restart();
      const backAt = Date.now();
      const firsts1 = await fleet.waitForEnters(workers, 'r', backAt, RECOVERY_MS);
      const lost1 = fleet.find('lost', restartAt, (m) => m.code === 'SESSION_LOST').length;
      t.diagnostic(
        `graceful restart: etcd down ${backAt - restartAt} ms; first hold ${Math.min(...firsts1.values()) - backAt} ms and every worker ` +
          `${Math.max(...firsts1.values()) - backAt} ms after it was back; ${lost1} hold(s) lost`,
      );

      // 2. Crash (SIGKILL) and stay down for TTL + 2 s: every session is lost on the client side.
      await eventually(() => fleet!.currentHolder('long') === a, RECOVERY_MS, 'a holds "long" before the crash');
      const longHold = [...a.messages].reverse().find((m) => m.type === 'enter' && m.name === 'long')!;
      const crashAt = Date.now();
      await etcd.kill('SIGKILL');
      await delay((TTL + 2) * 1000);
      await etcd.restart();
      const back2At = Date.now();
      const firsts2 = await fleet.waitForEnters(workers, 'r', back2At, RECOVERY_MS);
      const lead2 = await fleet.waitForLeader(back2At, RECOVERY_MS);
      const lostDuringOutage = fleet.find('lost', crashAt, (m) => m.code === 'SESSION_LOST' && Number(m.at) < back2At);
      const sessionsLost = fleet.find('session', crashAt, (m) => m.status === 'lost' && Number(m.at) < back2At);
      t.diagnostic(
        `crash: etcd down ${back2At - crashAt} ms; ${sessionsLost.length} session(s) declared lost and ${lostDuringOutage.length} hold(s) signalled during the outage; ` +
          `first hold ${Math.min(...firsts2.values()) - back2At} ms, every worker ${Math.max(...firsts2.values()) - back2At} ms, ` +
          `a leader ${Number(lead2.at) - back2At} ms after etcd was back`,
      );
      assert.equal(sessionsLost.length, workers.length, 'every worker must declare its session lost during an outage longer than the TTL');
      const longLost = a.messages.find((m) => m.type === 'lost' && m.token === longHold.token);
      assert.ok(longLost && Number(longLost.at) < back2At, `the hold of "long" must be signalled lost during the outage: ${JSON.stringify(longLost)}`);
      assert.equal(longLost.code, 'SESSION_LOST');
      t.diagnostic(`crash: the hold of "long" was signalled lost ${Number(longLost.at) - crashAt} ms after the crash, while etcd was down`);

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('r'), 'lock r');
      fleet.assertExclusive(fleet.lockIntervals('long'), 'lock long');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      t.diagnostic(summary(fleet, 'r'));
      client = rawClient(etcd.endpoint);
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });

  it('3-member cluster: a follower, then the raft leader, killed and restarted; the app has all endpoints', async (t) => {
    cluster = await startEtcdCluster(3);
    const endpoints = cluster.endpoints;
    const { ns, res } = scenarioPrefixes('cluster');
    let client = rawClient(endpoints);
    try {
      await initFence(client, res, ['m', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      client.close();
      fleet = new FaultFleet({ hosts: endpoints, namespace: ns, ttl: TTL, election: 'leader', resource: { hosts: endpoints, prefix: res } });
      const workers = await fleet.startAll(['a', 'b', 'c']);
      for (const w of workers) w.send({ type: 'loop', name: 'm', holdMs: 300, gapMs: 30 });
      await fleet.waitForEnters(workers, 'm', 0, 20_000);
      await fleet.waitForLeader(0, 10_000);

      const { index: leaderIndex } = await cluster.leader();
      const followerIndex = (leaderIndex + 1) % 3;
      const phases: Array<{ label: string; index: number }> = [
        { label: 'follower', index: followerIndex },
        { label: 'raft leader', index: leaderIndex },
      ];
      for (const phase of phases) {
        const member = cluster.member(phase.index);
        const killedAt = Date.now();
        await member.kill('SIGKILL');
        const duringDown = await fleet.waitForEnters(workers, 'm', killedAt, RECOVERY_MS);
        const newRaftLeader = await cluster.leader({ timeoutMs: 15_000 });
        await delay(1_000);
        await member.restart();
        const restartedAt = Date.now();
        const afterRestart = await fleet.waitForEnters(workers, 'm', restartedAt, RECOVERY_MS);
        const lost = fleet.find('lost', killedAt, (m) => m.code === 'SESSION_LOST').length;
        t.diagnostic(
          `${phase.label} ${member.name} killed: every worker held the lock again within ${Math.max(...duringDown.values()) - killedAt} ms ` +
            `(raft leader now ${newRaftLeader.member.name}); after its restart within ${Math.max(...afterRestart.values()) - restartedAt} ms; ` +
            `${lost} hold(s) lost to session expiry`,
        );
      }
      const lastLead = await fleet.waitForLeader(0, 1_000);
      assert.ok(lastLead);

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('m'), 'lock m');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      t.diagnostic(summary(fleet, 'm'));
      client = rawClient(endpoints);
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });
});
