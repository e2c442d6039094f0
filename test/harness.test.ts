// Self-test of the test harness, against real etcd binaries.
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { after, before, describe, it } from 'node:test';

import { etcdFixture, runEtcdctl, startEtcd, startEtcdCluster, withEtcd, type EtcdCluster } from './harness/etcd.js';
import { sleep } from './harness/lines.js';
import { spawnNodeScript } from './harness/processes.js';
import { startProxy, type TcpProxy } from './harness/proxy.js';

/** Running and not a zombie (an orphan stays a zombie until init gets round to reaping it). */
function isAlive(pid: number): boolean {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2)[0] !== 'Z';
  } catch {
    return false;
  }
}

async function eventually(what: string, check: () => boolean, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!check()) {
    if (Date.now() > deadline) assert.fail(`${what} did not happen within ${timeoutMs} ms`);
    await sleep(50);
  }
}

async function timed<T>(fn: () => Promise<T>): Promise<{ value: T; ms: number }> {
  const start = Date.now();
  const value = await fn();
  return { value, ms: Date.now() - start };
}

describe('single etcd server', () => {
  it('starts, serves put/get, and stop() removes the data dir', async () => {
    const etcd = await startEtcd();
    const pid = etcd.pid!;
    assert.match(etcd.endpoint, /^127\.0\.0\.1:\d+$/);
    assert.equal(etcd.clientUrl, `http://${etcd.endpoint}`);
    assert.ok(existsSync(etcd.dataDir), 'data dir exists while running');
    assert.ok(isAlive(pid));

    assert.equal((await etcd.etcdctl(['put', 'harness/k', 'v1'])).code, 0);
    const get = await etcd.etcdctl(['get', 'harness/k', '--print-value-only']);
    assert.deepEqual([get.code, get.stdout.trim()], [0, 'v1']);
    const status = await etcd.status();
    assert.ok(status.isLeader, 'a single member leads itself');
    assert.match(status.memberId, /^\d+$/);

    await etcd.stop();
    assert.equal(etcd.running, false);
    assert.equal(existsSync(etcd.dataDir), false, 'data dir removed');
    await eventually('etcd process exit', () => !isAlive(pid));
    await etcd.stop(); // idempotent
  });

  describe('lifecycle on a shared fixture', () => {
    const etcd = etcdFixture();

    it('keeps its data across kill() + restart() on the same port', async () => {
      await etcd().etcdctl(['put', 'harness/durable', 'yes']);
      const { endpoint, dataDir } = etcd();
      const exit = await etcd().kill('SIGKILL');
      assert.equal(exit.signal, 'SIGKILL');
      assert.equal(etcd().running, false);
      assert.ok(existsSync(dataDir), 'kill() keeps the data dir');

      await etcd().restart();
      assert.equal(etcd().endpoint, endpoint);
      const get = await etcd().etcdctl(['get', 'harness/durable', '--print-value-only']);
      assert.equal(get.stdout.trim(), 'yes');
    });

    it('stops answering while paused and recovers on resume()', async () => {
      etcd().pause();
      const stalled = await etcd().etcdctl(['get', 'harness/durable', '--command-timeout=1s']);
      assert.notEqual(stalled.code, 0, 'a paused server cannot answer');
      etcd().resume();
      await etcd().waitForHealth(5_000);
      assert.equal((await etcd().etcdctl(['get', 'harness/durable'])).code, 0);
    });
  });

  it('serves TLS with client certificates and enforces auth', async () => {
    await withEtcd(
      async (etcd) => {
        assert.match(etcd.clientUrl, /^https:\/\//);
        assert.ok(etcd.tls?.ca.toString().includes('BEGIN CERTIFICATE'));
        assert.equal((await etcd.etcdctl(['put', 'secure/k', 'v'])).code, 0, 'root credentials + client cert work');

        // TLS without a client certificate is refused by --client-cert-auth.
        const noCert = await runEtcdctl([etcd.clientUrl], ['get', 'secure/k', '--command-timeout=2s', '--dial-timeout=2s'], {
          tls: { ...etcd.tls!, clientCertFile: '', clientKeyFile: '' },
          credentials: etcd.credentials,
        });
        assert.notEqual(noCert.code, 0);
        // A wrong password is refused even with a valid certificate.
        const badPassword = await runEtcdctl([etcd.clientUrl], ['get', 'secure/k'], {
          tls: etcd.tls,
          credentials: { username: 'root', password: 'wrong' },
        });
        assert.notEqual(badPassword.code, 0);
        assert.match(badPassword.stderr, /authentication failed/);
      },
      { tls: { clientCertAuth: true }, auth: { rootPassword: 'harness-pw' } },
    );
  });
});

describe('three-member cluster', () => {
  let cluster: EtcdCluster;
  before(async () => {
    cluster = await startEtcdCluster(3);
  });
  after(async () => {
    await cluster?.stop();
  });

  it('elects one raft leader that every member agrees on', async () => {
    assert.equal(cluster.endpoints.length, 3);
    const leader = await cluster.leader();
    const statuses = await Promise.all(cluster.members.map((m) => m.status()));
    assert.deepEqual(new Set(statuses.map((s) => s.leaderId)), new Set([leader.memberId]));
    assert.equal(statuses.filter((s) => s.isLeader).length, 1);
  });

  it('survives losing its leader, and the member rejoins after restart()', async () => {
    const old = await cluster.leader();
    await old.member.kill('SIGKILL');
    const next = await cluster.leader();
    assert.notEqual(next.index, old.index);

    assert.equal((await cluster.etcdctl(['put', 'harness/ha', 'still-up'])).code, 0);
    await old.member.restart();
    // A linearizable read from the restarted member proves it caught up with the log.
    const get = await old.member.etcdctl(['get', 'harness/ha', '--print-value-only']);
    assert.equal(get.stdout.trim(), 'still-up');
  });
});

describe('TCP proxy in front of etcd', () => {
  const etcd = etcdFixture();
  let proxy: TcpProxy;
  before(async () => {
    proxy = await startProxy(etcd().endpoint);
  });
  after(async () => {
    await proxy?.close();
  });
  // Short timeouts so the failing cases fail fast on their own (not via our kill timer).
  const viaProxy = (args: string[]) =>
    etcd().etcdctl([...args, '--dial-timeout=1s', '--command-timeout=1s'], { endpoints: [proxy.endpoint], timeoutMs: 10_000 });

  it('passes traffic through', async () => {
    assert.match(proxy.endpoint, /^127\.0\.0\.1:\d+$/);
    assert.equal((await viaProxy(['put', 'harness/proxy', 'p'])).code, 0);
    const get = await viaProxy(['get', 'harness/proxy', '--print-value-only']);
    assert.deepEqual([get.code, get.stdout.trim()], [0, 'p']);
  });

  it('blackhole() swallows requests until pass()', async () => {
    proxy.blackhole();
    const { value: r, ms } = await timed(() => viaProxy(['get', 'harness/proxy']));
    assert.notEqual(r.code, 0);
    assert.equal(r.timedOut, false, 'etcdctl gave up by itself');
    assert.ok(ms >= 900, `failed after ${ms} ms: a blackhole should make it wait for its timeout`);
    proxy.pass();
    assert.equal((await viaProxy(['get', 'harness/proxy'])).code, 0);
  });

  it('reset() refuses connections until pass()', async () => {
    proxy.reset();
    assert.equal(proxy.connectionCount, 0);
    const r = await viaProxy(['get', 'harness/proxy']);
    assert.notEqual(r.code, 0);
    proxy.pass();
    assert.equal((await viaProxy(['get', 'harness/proxy'])).code, 0);
  });

  it('delay() slows every chunk down', async () => {
    proxy.delay(300);
    try {
      const { value: r, ms } = await timed(() => etcd().etcdctl(['get', 'harness/proxy'], { endpoints: [proxy.endpoint] }));
      assert.equal(r.code, 0);
      assert.ok(ms >= 600, `took ${ms} ms: a request/response round trip crosses the proxy twice`);
    } finally {
      proxy.pass();
    }
  });
});

describe('node child processes', () => {
  it('exchanges JSON-line messages and reports how the child exited', async () => {
    const child = spawnNodeScript('test/harness/echo-child.js', { args: ['a1'], env: { ECHO_CHILD_ENV: 'e1' } });
    const ready = await child.waitForMessage('ready');
    assert.deepEqual([ready.args, ready.env, ready.pid], [['a1'], 'e1', child.pid]);
    assert.match(child.logs(), /plain text is not a message/);

    child.send({ type: 'ping', n: 1 });
    child.send({ type: 'ping', n: 2 });
    // Queue semantics: each wait returns the next unconsumed match.
    assert.equal((await child.waitForMessage({ type: 'ping', echoed: true })).n, 1);
    assert.equal((await child.waitForMessage({ type: 'ping', echoed: true })).n, 2);
    await assert.rejects(child.waitForMessage('never', 200), /timed out after 200 ms/);

    const exit = await child.kill('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null });
    assert.equal((await child.waitForMessage('bye')).type, 'bye');
    await assert.rejects(child.waitForMessage('ready'), /output (already ended|ended before a matching message)/);
  });

  it('resolves exited when the child exits by itself', async () => {
    const child = spawnNodeScript('test/harness/echo-child.js');
    await child.waitForMessage('ready');
    child.send({ type: 'exit', code: 3 });
    assert.deepEqual(await child.exited, { code: 3, signal: null });
  });

  it('kills etcd servers and child processes whose owner was SIGKILLed', async () => {
    const owner = spawnNodeScript('test/harness/owner-child.js');
    const started = await owner.waitForMessage('started', 20_000);
    const etcdPid = started.etcdPid as number;
    const grandchildPid = started.grandchildPid as number;
    const dataDir = started.dataDir as string;
    assert.ok(isAlive(etcdPid) && isAlive(grandchildPid) && existsSync(dataDir));

    await owner.kill('SIGKILL');
    // No cleanup code ran in the owner: the watchdog and the lifeline must do it.
    await eventually('orphaned etcd killed', () => !isAlive(etcdPid));
    await eventually('orphaned node child killed', () => !isAlive(grandchildPid));
    await eventually('orphaned data dir removed', () => !existsSync(dataDir));
  });
});
