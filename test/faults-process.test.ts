// Fault injection on the application processes: holders SIGKILLed, and a holder frozen
// with SIGSTOP for longer than the session TTL (a GC-like pause), then resumed.
// Invariants are checked from outside the processes (see test/support/faults-observer.ts).
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { etcdFixture } from './harness/etcd.js';
import { delay, eventually, rawClient } from './support/apps.js';
import { assertNoStrays, FaultFleet, initFence, leaseSet, scenarioPrefixes, summary } from './support/faults-observer.js';

const TTL = 3;

describe('faults: application processes (real etcd)', () => {
  const etcd = etcdFixture();
  let fleet: FaultFleet | undefined;
  afterEach(async () => {
    await fleet?.killAll();
    fleet = undefined;
  });

  function newFleet(ns: string, res: string): FaultFleet {
    fleet = new FaultFleet({
      hosts: [etcd().endpoint],
      namespace: ns,
      ttl: TTL,
      election: 'leader',
      resource: { hosts: [etcd().endpoint], prefix: res },
    });
    return fleet;
  }

  it('a SIGKILLed holder and leader is replaced after its lease expires; no overlap, others keep working, nothing left behind', async (t) => {
    const { ns, res } = scenarioPrefixes('kill');
    const client = rawClient(etcd().endpoint);
    try {
      await initFence(client, res, ['k', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      const fleet = newFleet(ns, res);
      // The victim starts first: it leads the election and takes the lock for a long hold.
      const [victim] = await fleet.startAll(['victim']);
      await fleet.waitForLeader(0, 15_000);
      victim!.send({ type: 'loop', name: 'k', holdMs: 30_000, gapMs: 50 });
      await victim!.waitForMessage('enter', 10_000);
      const others = await fleet.startAll(['b', 'c']);
      for (const w of others) w.send({ type: 'loop', name: 'k', holdMs: 300, gapMs: 50 });
      await delay(500); // b and c queue behind the victim

      const killedAt = Date.now();
      await fleet.kill(victim!);
      const firsts = await fleet.waitForEnters(others, 'k', killedAt, (TTL + 10) * 1000);
      const lockHandover = Math.min(...firsts.values()) - killedAt;
      const lead = await fleet.waitForLeader(killedAt, (TTL + 10) * 1000);
      const leaderHandover = Number(lead.at) - killedAt;
      t.diagnostic(`lock handed over ${lockHandover} ms and leadership ${leaderHandover} ms after SIGKILL (TTL ${TTL} s)`);
      assert.ok(lockHandover >= 500, `the lock moved ${lockHandover} ms after the kill: before the lease could expire?`);

      // A new instance joins and gets the lock too: new sessions work.
      const [late] = await fleet.startAll(['late']);
      const joinedAt = Date.now();
      late!.send({ type: 'loop', name: 'k', holdMs: 300, gapMs: 50 });
      await fleet.waitForEnters([...others, late!], 'k', joinedAt, 20_000);

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('k'), 'lock k');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      t.diagnostic(summary(fleet, 'k'));
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });

  it('a holder and leader frozen (SIGSTOP) past its TTL learns on resume that it lost both; its stale write is refused by fencing', async (t) => {
    const { ns, res } = scenarioPrefixes('stop');
    const client = rawClient(etcd().endpoint);
    let frozenPid: number | undefined;
    try {
      await initFence(client, res, ['g', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      const fleet = newFleet(ns, res);
      const [frozen] = await fleet.startAll(['frozen']);
      await fleet.waitForLeader(0, 15_000);
      frozen!.send({ type: 'loop', name: 'g', holdMs: 60_000, gapMs: 50 });
      const entered = await frozen!.waitForMessage('enter', 10_000);
      await frozen!.waitForMessage((m) => m.type === 'write' && m.name === 'g' && m.ok === true, 10_000);
      const [other] = await fleet.startAll(['other']);
      other!.send({ type: 'loop', name: 'g', holdMs: 400, gapMs: 50 });
      await delay(500);

      frozenPid = frozen!.pid;
      const frozenAt = Date.now();
      fleet.cutAt.set(frozen!.name, frozenAt);
      process.kill(frozenPid!, 'SIGSTOP');
      // While it is frozen the lease expires and the other instance takes over and writes.
      const otherEnter = (await fleet.waitForEnters([other!], 'g', frozenAt, (TTL + 10) * 1000)).get('other')!;
      await fleet.waitForLeader(frozenAt, (TTL + 10) * 1000, [other!]);
      await eventually(() => fleet.find('write', frozenAt, (m) => m.worker === 'other' && m.name === 'g' && m.ok === true).length > 0, 10_000, 'other wrote');
      const frozenForMs = Date.now() - frozenAt;

      const resumedAt = Date.now();
      process.kill(frozenPid!, 'SIGCONT');
      frozenPid = undefined;
      const resumed = await frozen!.waitForMessage('resumed', 10_000);
      const probe = (resumed.locks as Array<Record<string, unknown>>).find((l) => l.name === 'g');
      assert.ok(probe, `the frozen worker still had the hold in hand: ${JSON.stringify(resumed)}`);
      assert.equal(probe.token, entered.token);
      assert.equal(probe.held, false, 'isHeld() must be false as soon as the process runs again');
      assert.equal(probe.signalAborted, true, 'the hold signal must have aborted by the time isHeld() returned');
      assert.equal(probe.throwIfLost, 'SESSION_LOST');
      assert.equal(resumed.isLeader, false, 'isLeader() must be false as soon as the process runs again');
      const lost = await frozen!.waitForMessage((m) => m.type === 'lost' && m.token === entered.token, 5_000);
      assert.equal(lost.code, 'SESSION_LOST');
      await frozen!.waitForMessage('unlead', 5_000);
      // An unaware client would still write with its old token: the fenced resource refuses it.
      const stale = await frozen!.waitForMessage((m) => m.type === 'stale-write' && m.name === 'g', 5_000);
      assert.equal(stale.refused, true, `stale write was not refused: ${JSON.stringify(stale)}`);
      t.diagnostic(
        `frozen ${frozenForMs} ms; other held the lock ${otherEnter - frozenAt} ms after the freeze; ` +
          `on resume isHeld()=false, signal aborted, throwIfLost() threw SESSION_LOST, stale write refused`,
      );

      // The resumed instance works again: it queues on a new session and gets the lock.
      await fleet.waitForEnters([frozen!], 'g', resumedAt, 20_000);
      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('g'), 'lock g');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      if (frozenPid !== undefined) process.kill(frozenPid, 'SIGCONT');
      client.close();
    }
  });
});
