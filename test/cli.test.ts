// The nest-etcd-coordination CLI (lib/cli/) against a real etcd: holds taken by separate worker
// processes and by etcdctl lock / elect, read by `inspect` (text, --json, --watch) and released
// by `release`; the published bin (npm pack); auth + TLS without printing secrets.
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { execFile } from 'node:child_process';
import { existsSync, statSync } from 'node:fs';
import path from 'node:path';
import { promisify } from 'node:util';
import { etcdFixture, resolveEtcdBinaries, withEtcd } from './harness/etcd.js';
import { BUILD_ROOT } from './harness/processes.js';
import { closeApps, eventually, keysUnder, rawClient, uniqueNamespace } from './support/apps.js';
import { spawnWorker } from './support/workers.js';
import type { NodeProcess } from './harness/processes.js';

const CLI = path.join(BUILD_ROOT, 'lib', 'cli', 'main.js');
const REPO = process.env.REPO_ROOT ?? path.resolve(BUILD_ROOT, '..');

interface CliResult { code: number | null; stdout: string; stderr: string }

/** The environment without the caller's ETCD_* / ETCDCTL_* (they would change what the CLI connects to). */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [k, v] of Object.entries(process.env)) if (!k.startsWith('ETCD') && k !== 'NODE_TEST_CONTEXT') env[k] = v;
  return { ...env, ...extra };
}

const running = new Set<ChildProcess>();
after(() => running.forEach((c) => c.kill('SIGKILL')));

/** Runs the CLI to its end (killed after 60 s). */
function cli(args: string[], options: { input?: string; env?: NodeJS.ProcessEnv; bin?: string } = {}): Promise<CliResult> {
  return new Promise((resolve) => {
    const child = options.bin ? spawn(options.bin, args, { env: cleanEnv(options.env) }) : spawn(process.execPath, [CLI, ...args], { env: cleanEnv(options.env) });
    running.add(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
    child.on('close', (code) => {
      clearTimeout(timer);
      running.delete(child);
      resolve({ code, stdout, stderr });
    });
    child.stdin!.end(options.input ?? '');
  });
}

describe('nest-etcd-coordination CLI (real etcd)', () => {
  const etcd = etcdFixture();
  const { etcdctl } = resolveEtcdBinaries();
  const workers: NodeProcess[] = [];
  afterEach(async () => {
    await Promise.all(workers.splice(0).map((w) => w.kill('SIGTERM')));
    await closeApps();
  });
  const worker = async (ns: string, identity: string, election?: string) => {
    const w = spawnWorker({ use: election ? ['locks', 'election'] : ['locks'], hosts: etcd().endpoint, namespace: ns, identity, ttl: 10, election });
    workers.push(w);
    await w.waitForMessage('ready', 30_000);
    return w;
  };
  /** etcdctl lock / elect, kept running until SIGINT (it then revokes its lease). */
  const ctl = (args: string[]) => {
    const child = spawn(etcdctl, ['--endpoints', etcd().endpoint, ...args], { env: cleanEnv({ ETCDCTL_API: '3' }), stdio: ['ignore', 'pipe', 'pipe'] });
    running.add(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    child.on('close', () => running.delete(child));
    return { child, output: () => out, stop: () => new Promise<void>((resolve) => (child.exitCode !== null ? resolve() : (child.once('close', () => resolve()), child.kill('SIGINT')))) };
  };
  const conn = (ns: string) => ['-e', etcd().endpoint, '-n', ns];

  it('inspect shows mutex, read/write, semaphore and election holds of 3 processes and of etcdctl, in text and --json', async () => {
    const ns = uniqueNamespace('cli-inspect');
    const client = rawClient(etcd().endpoint);
    const locked = ctl(['lock', `${ns}ctl`]);
    const elected = ctl(['elect', `${ns}vote`, 'ctl-proposal']);
    try {
      const wa = await worker(ns, 'wa', 'leader');
      await wa.waitForMessage((m) => m.type === 'state' && m.isLeader === true, 20_000);
      const wb = await worker(ns, 'wb', 'leader');
      const wc = await worker(ns, 'wc');
      const keys = async (prefix: string, n: number) => eventually(async () => (await keysUnder(client, `${ns}${prefix}`)).length === n, 20_000, `${n} keys under ${prefix}`);
      wa.send({ type: 'acquire', name: 'job' });
      await wa.waitForMessage('acquired', 20_000);
      wb.send({ type: 'acquire', name: 'job' });
      await keys('job/', 2);
      wa.send({ type: 'read', name: 'cfg' });
      await wa.waitForMessage('acquired', 20_000);
      wb.send({ type: 'write', name: 'cfg' });
      await keys('cfg/', 2);
      wc.send({ type: 'read', name: 'cfg' });
      await keys('cfg/', 3);
      for (const [w, n] of [[wa, 1], [wb, 2], [wc, 3]] as const) {
        w.send({ type: 'acquire', name: 'pool', id: 'p', permits: 2 });
        await keys('pool/', n);
      }
      await keys('leader/', 2);
      await client.put(`${ns}loose`).value('x');
      await eventually(() => locked.output().includes(`${ns}ctl/`) && elected.output().includes('ctl-proposal'), 20_000, 'etcdctl lock and elect hold');

      const args = [...conn(ns), '--election', 'leader', '--election', 'vote', '--permits', 'pool=2'];
      const json = await cli(['inspect', '--json', ...args]);
      assert.equal(json.code, 0, json.stderr);
      const doc = JSON.parse(json.stdout);
      const lock = (name: string) => doc.locks.find((l: { name: string }) => l.name === name);
      assert.deepEqual([lock('job').kind, lock('job').holder.value, lock('job').waiters.map((w: { value: string }) => w.value)], ['lock or election', 'wa', ['wb']]);
      assert.match(lock('job').holder.fencingToken, /^\d+$/);
      assert.deepEqual([lock('ctl').holder.value, lock('ctl').waiters], ['', []], 'etcdctl lock records no identity');
      const rw = doc.readWriteLocks.find((l: { name: string }) => l.name === 'cfg');
      assert.deepEqual([rw.heldAs, rw.holders.map((h: { value: string }) => h.value), rw.waiters.map((w: { value: string; side: string }) => `${w.side}:${w.value}`)], ['read', ['wa'], ['write:wb', 'read:wc']]);
      const pool = doc.semaphores.find((s: { name: string }) => s.name === 'pool');
      assert.deepEqual([pool.permits, pool.holders.map((h: { value: string }) => h.value), pool.waiters.map((h: { value: string }) => h.value)], [2, ['wa', 'wb'], ['wc']]);
      const election = (name: string) => doc.elections.find((e: { name: string }) => e.name === name);
      assert.deepEqual([election('leader').holder.value, election('leader').waiters.map((w: { value: string }) => w.value)], ['wa', ['wb']]);
      assert.equal(election('vote').holder.value, 'ctl-proposal');
      const sessionOf = (identity: string) => doc.sessions.find((s: { identities: string[] }) => s.identities.includes(identity));
      for (const id of ['wa', 'wb', 'wc']) {
        assert.ok(sessionOf(id), `a session of ${id}`);
        assert.ok(sessionOf(id).ttlSeconds > 0 && sessionOf(id).ttlSeconds <= 10 && sessionOf(id).grantedTtlSeconds === 10, JSON.stringify(sessionOf(id)));
      }
      assert.ok(doc.sessions.some((s: { identities: string[]; grantedTtlSeconds: number }) => s.identities.length === 0 && s.grantedTtlSeconds === 60), 'etcdctl sessions');
      assert.deepEqual(doc.unclassified.map((u: { key: string }) => u.key), [`${ns}loose`]);

      const text = await cli(['inspect', ...args]);
      assert.equal(text.code, 0, text.stderr);
      assert.match(text.stdout, /job\s+lock or election\s+holder\s+wa\s+[0-9a-f]+\s+rev \d+\s+\d+\n\s+waiter 1\s+wb/);
      assert.match(text.stdout, /ctl\s+lock or election\s+holder\s+\(not recorded\)/);
      assert.match(text.stdout, /cfg\s+read holder\s+wa[^\n]*\n\s+waiter 1 \(write\)\s+wb[^\n]*\n\s+waiter 2 \(read\)\s+wc/);
      assert.match(text.stdout, /pool\s+2 of 2 used, 1 waiting\s+holder\s+wa/);
      assert.match(text.stdout, /leader\s+leader\s+wa[^\n]*\n\s+candidate 1\s+wb/);
      assert.match(text.stdout, /vote\s+leader\s+ctl-proposal/);
      assert.match(text.stdout, new RegExp(`UNCLASSIFIED KEYS[^\\n]*\\nKEY[^\\n]*\\n${ns.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}loose\\s+-`));
      // Without the hints: the election is "lock or election", the semaphore's count is unknown.
      const plain = JSON.parse((await cli(['inspect', '--json', ...conn(ns)])).stdout);
      assert.equal(plain.locks.find((l: { name: string }) => l.name === 'vote').kind, 'lock or election');
      assert.equal(plain.semaphores[0].permits, null);
    } finally {
      await Promise.all([locked.stop(), elected.stop()]);
      await Promise.all(workers.splice(0).map((w) => w.kill('SIGTERM')));
      await client.delete().key(`${ns}loose`);
      await eventually(async () => (await keysUnder(client, ns)).length === 0, 20_000, 'nothing left in the namespace');
      client.close();
    }
  });

  it('--watch redraws on every change (scripted exit), --json gives one document per drawing', async () => {
    const ns = uniqueNamespace('cli-watch');
    const client = rawClient(etcd().endpoint);
    const child = spawn(process.execPath, [CLI, 'inspect', '--watch', '--json', '--watch-exit-after', '3', ...conn(ns)], { env: cleanEnv() });
    running.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    const lines = () => out.split('\n').filter(Boolean);
    try {
      await eventually(() => lines().length === 1, 20_000, 'first drawing');
      const wa = await worker(ns, 'wa');
      wa.send({ type: 'acquire', name: 'job' });
      await eventually(() => lines().length === 2, 20_000, 'second drawing after the acquire');
      wa.send({ type: 'release', name: 'job' });
      assert.equal(await exited, 0);
      const drawings = lines().map((l) => JSON.parse(l));
      assert.equal(drawings.length, 3);
      assert.deepEqual(drawings[0].locks, []);
      assert.equal(drawings[1].locks[0].holder.value, 'wa');
      assert.deepEqual(drawings[2].locks, [], 'released');
      assert.ok(BigInt(drawings[2].revision) > BigInt(drawings[1].revision));
    } finally {
      child.kill('SIGKILL');
      client.close();
    }
  });

  it('--watch stops on SIGINT with exit code 0', async () => {
    const ns = uniqueNamespace('cli-sigint');
    const child = spawn(process.execPath, [CLI, 'inspect', '--watch', ...conn(ns)], { env: cleanEnv() });
    running.add(child);
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    const exited = new Promise<number | null>((resolve) => child.on('close', (code) => resolve(code)));
    await eventually(() => out.includes('--- drawing 1 ---'), 20_000, 'first drawing');
    child.kill('SIGINT');
    assert.equal(await exited, 0);
  });

  it('release deletes only the holder after confirmation (guarded by revision), the next waiter gets it, who did it is logged', async () => {
    const ns = uniqueNamespace('cli-release');
    const client = rawClient(etcd().endpoint);
    try {
      const wa = await worker(ns, 'wa');
      const wb = await worker(ns, 'wb');
      wa.send({ type: 'acquire', name: 'job' });
      const held = await wa.waitForMessage('acquired', 20_000);
      wb.send({ type: 'acquire', name: 'job' });
      await eventually(async () => (await keysUnder(client, `${ns}job/`)).length === 2, 20_000, 'waiter key');

      const declined = await cli(['release', 'job', ...conn(ns)], { input: 'n\n' });
      assert.equal(declined.code, 3, declined.stderr);
      assert.match(declined.stderr, new RegExp(`Delete "${held.key}" \\(holder "wa"`));
      assert.match(declined.stdout, /not confirmed: nothing deleted/);
      const stale = await cli(['release', 'job', '--yes', '--revision', '1', ...conn(ns)]);
      assert.equal(stale.code, 3);
      assert.match(stale.stdout, /is not at revision 1/);
      assert.equal((await keysUnder(client, `${ns}job/`)).length, 2, 'nothing deleted yet');

      const done = await cli(['release', 'job', '--as', 'oncall-jane', ...conn(ns)], { input: 'y\n' });
      assert.equal(done.code, 0, done.stderr);
      assert.match(done.stdout, new RegExp(`released: deleted "${held.key}" \\(holder "wa"`));
      assert.match(done.stderr, new RegExp(`WARN \\[nest-etcd-coordination\\] force release by "oncall-jane": deleted "${held.key}" of "job"`));
      const next = await wb.waitForMessage('acquired', 20_000);
      assert.ok(BigInt(String(next.token)) > BigInt(String(held.token)));
      assert.deepEqual(await keysUnder(client, `${ns}job/`), [next.key], 'only the holder was deleted');

      // A read/write lock has several holders: the key must be named.
      wa.send({ type: 'read', name: 'cfg', id: 'r' });
      const read = await wa.waitForMessage('acquired', 20_000);
      const refused = await cli(['release', 'cfg', '--yes', ...conn(ns)]);
      assert.equal(refused.code, 2);
      assert.match(refused.stderr, /read\/write lock key.*--holder-key/);
      const named = await cli(['release', 'cfg', '--yes', '--holder-key', String(read.key), ...conn(ns)]);
      assert.equal(named.code, 0, named.stderr);
      assert.deepEqual(await keysUnder(client, `${ns}cfg/`), []);
      const nothing = await cli(['release', 'cfg', '--yes', ...conn(ns)]);
      assert.equal(nothing.code, 3);
      assert.match(nothing.stdout, /"cfg" is not held/);
    } finally {
      await Promise.all(workers.splice(0).map((w) => w.kill('SIGTERM')));
      await eventually(async () => (await keysUnder(client, ns)).length === 0, 20_000, 'nothing left in the namespace');
      client.close();
    }
  });

  it('usage errors: exit code 2 and a message naming the problem; --help on every command', async () => {
    const unknown = await cli(['inspect', '--nope']);
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--nope[\s\S]*inspect --help/);
    const badName = await cli(['release', 'a/b', '-e', etcd().endpoint]);
    assert.equal(badName.code, 2);
    assert.match(badName.stderr, /Invalid lock name "a\/b"/);
    const badNs = await cli(['inspect', '-e', etcd().endpoint, '-n', 'app']);
    assert.equal(badNs.code, 2);
    assert.match(badNs.stderr, /namespace/);
    assert.equal((await cli(['frobnicate'])).code, 2);
    for (const args of [['--help'], ['inspect', '--help'], ['release', '--help'], ['help', 'release']]) {
      const help = await cli(args);
      assert.equal(help.code, 0, args.join(' '));
      assert.match(help.stdout, /Usage: nest-etcd-coordination/);
      assert.match(help.stdout, /ETCD_ENDPOINTS/);
    }
    const down = await cli(['inspect', '-e', '127.0.0.1:1', '--request-timeout', '500']);
    assert.equal(down.code, 1);
    assert.match(down.stderr, /Could not reach etcd at 127\.0\.0\.1:1/);
  });

  it('the packed bin: npm pack ships dist/esm/cli/main.js executable, and it runs by its shebang', async (t) => {
    const bin = path.join(REPO, 'dist', 'esm', 'cli', 'main.js');
    if (!existsSync(bin)) return t.skip('dist/ not built (npm test builds it; a filtered build of build/ only does not)');
    assert.ok((statSync(bin).mode & 0o111) !== 0, 'dist/esm/cli/main.js is executable');
    const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json', '--ignore-scripts'], { cwd: REPO, maxBuffer: 64 * 1024 * 1024 });
    const files = (JSON.parse(stdout) as Array<{ files: Array<{ path: string; mode: number }> }>)[0]!.files;
    const packed = files.find((f) => f.path === 'dist/esm/cli/main.js');
    assert.ok(packed, 'npm pack includes the bin');
    assert.ok((packed.mode & 0o111) !== 0, `packed with an executable mode (${packed.mode.toString(8)})`);
    const ns = uniqueNamespace('cli-bin');
    const run = await cli(['inspect', '--json', ...conn(ns)], { bin });
    assert.equal(run.code, 0, run.stderr);
    assert.equal(JSON.parse(run.stdout).namespace, ns);
  });
});

describe('nest-etcd-coordination CLI with auth and TLS', () => {
  it('connects with ETCD_USERNAME/ETCD_PASSWORD and --cacert; never prints the password, even when it is wrong', async () => {
    const password = 'pw-Secret-4711';
    await withEtcd(async (server) => {
      const ns = uniqueNamespace('cli-auth');
      const tls = server.tls!;
      const base = ['inspect', '--json', '-e', server.endpoint, '-n', ns, '--cacert', tls.caFile];
      const ok = await cli(base, { env: { ETCD_USERNAME: 'root', ETCD_PASSWORD: password } });
      assert.equal(ok.code, 0, ok.stderr);
      assert.equal(JSON.parse(ok.stdout).namespace, ns);
      assert.ok(!ok.stdout.includes(password) && !ok.stderr.includes(password));
      const wrong = await cli([...base, '--user', 'root', '--password', `${password}-wrong`]);
      assert.equal(wrong.code, 1);
      assert.match(wrong.stderr, /rejected the credentials of user "root"/);
      assert.ok(!wrong.stderr.includes(password) && !wrong.stdout.includes(password));
      const noTls = await cli(['inspect', '-e', server.endpoint, '--request-timeout', '1000'], { env: { ETCD_USERNAME: 'root', ETCD_PASSWORD: password } });
      assert.equal(noTls.code, 1);
      assert.ok(!noTls.stderr.includes(password));
    }, { tls: true, auth: { rootPassword: password } });
  });
});
