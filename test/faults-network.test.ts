// Fault injection between the application and etcd: a TCP proxy that blackholes, delays
// and resets connections; compaction of etcd's history while waiters watch; expiry of
// etcd's simple auth tokens (etcd3 refreshes them on unary calls only, while keepalives
// and watches run on streams opened with the old token).
// Invariants are checked from outside the processes (see test/support/faults-observer.ts).
import { afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import { etcdFixture, startEtcd, type EtcdServer } from './harness/etcd.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';
import { delay, eventually, rawClient } from './support/apps.js';
import { assertNoStrays, FaultFleet, initFence, leaseSet, scenarioPrefixes, summary } from './support/faults-observer.js';

const TTL = 3;
const RECOVERY_MS = 25_000;

describe('faults: network, compaction, auth tokens (real etcd)', () => {
  const etcd = etcdFixture();
  let fleet: FaultFleet | undefined;
  let proxy: TcpProxy | undefined;
  let server: EtcdServer | undefined;
  afterEach(async () => {
    await fleet?.killAll();
    await proxy?.close();
    await server?.stop();
    fleet = proxy = server = undefined;
  });

  /** Heals a proxy the way a healed network does: the old, silently dead connections are reset. */
  async function heal(p: TcpProxy): Promise<void> {
    p.reset();
    await delay(100);
    p.pass();
  }

  it('proxy blackhole, delay and reset between the app and etcd: the cut-off holder and leader is told first, and recovers', async (t) => {
    const { ns, res } = scenarioPrefixes('net');
    const client = rawClient(etcd().endpoint);
    try {
      await initFence(client, res, ['n', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      proxy = await startProxy(etcd().endpoint);
      const base = { namespace: ns, ttl: TTL, election: 'leader' as const, resource: { hosts: [etcd().endpoint], prefix: res } };
      fleet = new FaultFleet({ ...base, hosts: [etcd().endpoint] });
      const [cut] = await fleet.startAll(['cut'], { hosts: [proxy.endpoint] });
      await fleet.waitForLeader(0, 15_000);
      const [direct] = await fleet.startAll(['direct']);
      // cut holds long enough that the blackhole below surely hits it while it holds.
      cut!.send({ type: 'loop', name: 'n', holdMs: 8_000, gapMs: 30 });
      const cutEnter = await cut!.waitForMessage('enter', 20_000);
      direct!.send({ type: 'loop', name: 'n', holdMs: 300, gapMs: 30 });
      await delay(300); // direct queues behind cut

      // 1. Blackhole while `cut` holds the lock and leads.
      const blackholeAt = Date.now();
      assert.ok(blackholeAt - Number(cutEnter.at) < 5_000, 'cut must still hold the lock when the network is cut');
      proxy.blackhole();
      const directEnter = (await fleet.waitForEnters([direct!], 'n', blackholeAt, (TTL + 10) * 1000)).get('direct')!;
      const directLead = await fleet.waitForLeader(blackholeAt, (TTL + 10) * 1000, [direct!]);
      const lost = await cut!.waitForMessage((m) => m.type === 'lost' && m.token === cutEnter.token, 1_000);
      const unlead = await cut!.waitForMessage('unlead', 1_000);
      assert.equal(lost.code, 'SESSION_LOST');
      assert.ok(Number(lost.at) <= directEnter, `cut told at ${lost.at}, direct entered at ${directEnter}`);
      assert.ok(Number(unlead.at) <= Number(directLead.at), `cut stepped down at ${unlead.at}, direct led at ${directLead.at}`);
      t.diagnostic(
        `blackhole: cut told it lost the lock ${Number(lost.at) - blackholeAt} ms after the cut, ${directEnter - Number(lost.at)} ms ` +
          `before direct got it; stepped down ${Number(directLead.at) - Number(unlead.at)} ms before direct led`,
      );
      cut!.send({ type: 'set', name: 'n', holdMs: 300 });
      await heal(proxy);
      const healedAt = Date.now();
      const backIn = (await fleet.waitForEnters([cut!], 'n', healedAt, RECOVERY_MS)).get('cut')! - healedAt;
      await cut!.waitForMessage((m) => m.type === 'session' && m.status === 'alive' && Number(m.at) >= healedAt, 1_000);
      t.diagnostic(`blackhole healed: cut holds the lock again ${backIn} ms later`);

      // 2. A slow link: 300 ms each way (RTT >= 600 ms, a fifth of the TTL). Sessions survive, locks move on.
      proxy.delay(300);
      const slowAt = Date.now();
      await delay(5_000);
      await fleet.waitForEnters([cut!, direct!], 'n', slowAt, RECOVERY_MS);
      const lostSlow = fleet.find('lost', slowAt, (m) => m.code === 'SESSION_LOST').length;
      t.diagnostic(`300 ms delay: both kept taking turns; ${lostSlow} hold(s) lost`);

      // 3. A link slower than the TTL (2 s each way): no session can be kept; nothing is ever reported held.
      proxy.delay(2_000);
      const tooSlowAt = Date.now();
      await delay(7_000);
      const cutEntersTooSlow = fleet.find('enter', tooSlowAt + (TTL + 2) * 1000, (m) => m.worker === 'cut');
      assert.deepEqual(cutEntersTooSlow, [], 'with a round trip longer than the TTL, no hold may be handed out');
      await heal(proxy);
      const healed2At = Date.now();
      await fleet.waitForEnters([cut!, direct!], 'n', healed2At, RECOVERY_MS);

      // 4. A flapping link: connections reset five times, 300 ms each, 1 s apart.
      const flapAt = Date.now();
      for (let i = 0; i < 5; i++) {
        proxy.reset();
        await delay(300);
        proxy.pass();
        await delay(1_000);
      }
      const flapEnd = Date.now();
      const afterFlap = await fleet.waitForEnters([cut!, direct!], 'n', flapEnd, RECOVERY_MS);
      const lostFlap = fleet.find('lost', flapAt, (m) => m.code === 'SESSION_LOST').length;
      t.diagnostic(`flapping: ${lostFlap} hold(s) lost; both hold again within ${Math.max(...afterFlap.values()) - flapEnd} ms`);

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('n'), 'lock n');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      t.diagnostic(summary(fleet, 'n'));
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });

  it('compaction while waiters watch (with and without the watch streams reconnecting): no waiter hangs', async (t) => {
    const { ns, res } = scenarioPrefixes('compact');
    const client = rawClient(etcd().endpoint);
    try {
      await initFence(client, res, ['c', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      proxy = await startProxy(etcd().endpoint);
      fleet = new FaultFleet({ hosts: [proxy.endpoint], namespace: ns, ttl: TTL, election: 'leader', resource: { hosts: [etcd().endpoint], prefix: res } });
      const [holder] = await fleet.startAll(['holder'], { hosts: [etcd().endpoint] });
      await fleet.waitForLeader(0, 15_000);
      holder!.send({ type: 'loop', name: 'c', holdMs: 60_000, gapMs: 30, rounds: 1 });
      await holder!.waitForMessage('enter', 10_000);
      const waiters = await fleet.startAll(['w1', 'w2']);
      for (const w of waiters) w.send({ type: 'loop', name: 'c', holdMs: 200, gapMs: 30 });
      await delay(1_000); // both queued, watching their predecessors; both follow the leader

      const compact = async (label: string): Promise<bigint> => {
        for (let i = 0; i < 50; i++) await client.put(`${res}noise/${i}`).value(label);
        const revision = BigInt((await client.get(`${res}noise/0`).exec()).header.revision);
        await client.kv.compact({ revision: revision.toString(), physical: true });
        return revision;
      };

      // 1. Compact under the established watches, then let the holder go.
      const rev1 = await compact('one');
      holder!.send({ type: 'close' });
      const releasedAt = Date.now();
      const firsts = await fleet.waitForEnters(waiters, 'c', releasedAt, RECOVERY_MS);
      await fleet.waitForLeader(releasedAt, RECOVERY_MS, waiters);
      t.diagnostic(`compacted to ${rev1}; after the holder left, both waiters held within ${Math.max(...firsts.values()) - releasedAt} ms`);

      // 2. Compact, then drop every connection of the waiters: their watch streams reconnect
      //    from revisions that no longer exist and etcd cancels those watches.
      const [late] = await fleet.startAll(['late'], { hosts: [etcd().endpoint] });
      late!.send({ type: 'loop', name: 'c', holdMs: 3_000, gapMs: 30, rounds: 1 });
      await late!.waitForMessage('enter', RECOVERY_MS);
      await delay(300);
      const rev2 = await compact('two');
      proxy.dropConnections();
      const droppedAt = Date.now();
      const again = await fleet.waitForEnters(waiters, 'c', droppedAt, RECOVERY_MS);
      t.diagnostic(`compacted to ${rev2} and dropped the connections; both waiters held again within ${Math.max(...again.values()) - droppedAt} ms`);
      const leader = fleet.currentLeader();
      assert.ok(leader && waiters.includes(leader), 'a waiter still leads');
      leader!.send({ type: 'resign' });
      const resignedAt = Date.now();
      await eventually(() => fleet!.find('lead', resignedAt).length > 0, RECOVERY_MS, 'a new leader after the resignation');

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('c'), 'lock c');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });

  it('auth tokens expiring (--auth-token-ttl=2) and etcd restarting (it forgets every token): keepalives and watches go on', async (t) => {
    server = await startEtcd({ auth: { rootPassword: 'root-secret' }, extraArgs: ['--auth-token-ttl=2'] });
    const { ns, res } = scenarioPrefixes('token');
    const prefix = ns.slice(0, ns.indexOf('/') + 1);
    for (const args of [
      ['user', 'add', 'app', '--new-user-password=app-secret'],
      ['role', 'add', 'app-rw'],
      ['role', 'grant-permission', 'app-rw', '--prefix=true', 'readwrite', prefix],
      ['user', 'grant-role', 'app', 'app-rw'],
    ]) {
      const r = await server.etcdctl(args);
      assert.equal(r.code, 0, `etcdctl ${args.join(' ')}: ${r.stderr}`);
    }
    const auth = { username: 'app', password: 'app-secret' };
    const root = () => new Etcd3({ hosts: server!.endpoint, auth: { username: 'root', password: 'root-secret' } });
    let client = root();
    try {
      await initFence(client, res, ['a', 'election-leader']);
      const leasesBefore = await leaseSet(client);
      client.close();
      proxy = await startProxy(server.endpoint);
      fleet = new FaultFleet({ hosts: [proxy.endpoint], namespace: ns, ttl: TTL, election: 'leader', auth, resource: { hosts: [server.endpoint], prefix: res, auth } });
      const [h, w] = await fleet.startAll(['h', 'w']);
      await fleet.waitForLeader(0, 15_000);
      h!.send({ type: 'loop', name: 'a', holdMs: 6_000, gapMs: 30 });
      await h!.waitForMessage('enter', 10_000);
      await delay(300);
      w!.send({ type: 'loop', name: 'a', holdMs: 300, gapMs: 30 });

      // 1. Idle for more than twice the token TTL: only keepalives flow, every token expires.
      const idleAt = Date.now();
      const handOver = await h!.waitForMessage((m) => m.type === 'exit', 15_000);
      h!.send({ type: 'set', name: 'a', holdMs: 300 });
      const handOverAt = Number(handOver.at);
      assert.ok(handOverAt - idleAt >= 4_500, 'the hand-over must come after the tokens expired');
      const firsts = await fleet.waitForEnters([w!, h!], 'a', handOverAt, RECOVERY_MS);
      assert.deepEqual(fleet.find('session', idleAt, (m) => m.status === 'lost'), [], 'token expiry must not end a session (keepalives go on)');
      t.diagnostic(
        `tokens expired while idle for ${handOverAt - idleAt} ms; the waiter got the lock ${firsts.get('w')! - handOverAt} ms after the hand-over ` +
          `and the old holder (queuing with a new watch) ${firsts.get('h')! - handOverAt} ms after it; no session lost`,
      );

      // 2. Connections dropped after the tokens expired: streams reopen with a stale token.
      await delay(2_500);
      proxy.dropConnections();
      const droppedAt = Date.now();
      await fleet.waitForEnters([w!, h!], 'a', droppedAt + 1_000, RECOVERY_MS);

      // 3. etcd restarts: simple tokens live in memory only, so every token is gone at once.
      await server.restart();
      const restartedAt = Date.now();
      const afterRestart = await fleet.waitForEnters([w!, h!], 'a', restartedAt + 1_000, RECOVERY_MS);
      const leader = fleet.currentLeader();
      assert.ok(leader, 'somebody leads');
      leader!.send({ type: 'resign' });
      const resignedAt = Date.now();
      const next = await fleet.waitForLeader(resignedAt, RECOVERY_MS);
      t.diagnostic(
        `after etcd restarted both held the lock within ${Math.max(...afterRestart.values()) - restartedAt} ms; ` +
          `after a resignation ${next.worker} led ${Number(next.at) - resignedAt} ms later`,
      );

      await fleet.closeAll();
      fleet.assertExclusive(fleet.lockIntervals('a'), 'lock a');
      fleet.assertExclusive(fleet.leaderIntervals(), 'leadership');
      fleet.assertNoRefusedWrites();
      t.diagnostic(summary(fleet, 'a'));
      client = root();
      await assertNoStrays(client, ns, leasesBefore, (TTL + 5) * 1000);
    } finally {
      client.close();
    }
  });
});
