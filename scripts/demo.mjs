#!/usr/bin/env node
// `npm run demo`: a live failover demo of the sample app (sample-app/), checked from outside.
//
// On a fresh clone it installs what is missing (npm dependencies, etcd), builds, starts a
// throwaway etcd (unless ETCD_HOSTS points at one) and N instances of the sample app, then
// follows a script:
//   1. let the cluster settle: one leader runs the @Interval/@Cron jobs, the report job
//      (@WithLock, skip when held) runs wherever it gets the lock;
//   2. pause (SIGSTOP) an instance while it holds the report lock, until its lock has expired
//      and another instance has written the report, then resume it: its write with the
//      stale fencing token must be refused by the fenced store;
//   2b. hand leadership over to a chosen instance (POST /handover?to=<id> on the leader);
//   3. stop the leader gracefully (SIGTERM): it resigns, the next one takes over at once;
//   4. kill the new leader (SIGKILL): the others wait for its session lease to expire.
// Meanwhile an outside observer (a plain etcd3 client) watches the election keys and the
// records the instances write to etcd (job runs with times and fencing tokens, leadership
// terms). At the end it prints the timeline and checks that no two instances ever led or ran
// a leader-only job at the same time. Exit code 0 only if every check passed.
//
// Usage: npm run demo -- [--duration <s>] [--instances <n>] [--stay] [--short] [--no-build]
// Run with --help for details. Everything started here is stopped on exit (also on Ctrl-C).
import { spawn, spawnSync } from 'node:child_process';
import { accessSync, closeSync, constants as fsConstants, existsSync, mkdirSync, mkdtempSync, openSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { randomBytes } from 'node:crypto';
import { shardChecks, startShardSampler } from './demo-shards.mjs';
import { onceChecks } from './demo-jobs.mjs';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const HOST = '127.0.0.1';

const HELP = `Usage: npm run demo -- [options]

Starts a throwaway etcd and a cluster of sample-app instances, fails the leader over twice
(SIGTERM, then SIGKILL), pauses a lock holder to show fencing, prints the timeline and checks
from etcd that no two instances ever led or ran a leader-only job at the same time.

Options:
  --duration <s>      length of the scripted part in seconds (default 30, minimum 10)
  --instances <n>     number of instances, 2..9 (default 3; the SIGKILL step needs 3)
  --stay              afterwards restart the stopped instances and keep the cluster up for the
                      dashboard until Ctrl-C
  --short             quick run for CI (duration 12 s)
  --no-build          reuse the existing build instead of compiling first
  --report-json <f>   also write the results as JSON to <f>
  -h, --help          this text

Environment:
  ETCD_HOSTS          use this etcd (host:port[,host:port...]) instead of a throwaway one; the
                      demo works in its own namespace there and deletes it at the end
  COORD_NAMESPACE     namespace to use (default: demo-<random>/)
  DEMO_BUILD_DIR      compiled output to run (default: build/); when it is not build/, the
                      demo compiles with tsc --outDir into it instead of scripts/build.mjs
  SESSION_TTL         session TTL of the instances in seconds (default 3)
  NO_COLOR            plain output`;

class DemoError extends Error {}

// ---------------------------------------------------------------------------------------------
// Options

function parseArgs(argv) {
  const opts = { duration: 30, instances: 3, stay: false, short: false, build: true, reportJson: undefined, help: false };
  let durationGiven = false;
  const value = (i, flag) => {
    const arg = argv[i];
    const eq = arg.indexOf('=');
    if (eq >= 0) return { value: arg.slice(eq + 1), next: i };
    if (i + 1 >= argv.length) throw new DemoError(`${flag} needs a value`);
    return { value: argv[i + 1], next: i + 1 };
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    const flag = arg.split('=')[0];
    if (flag === '-h' || flag === '--help') opts.help = true;
    else if (flag === '--stay') opts.stay = true;
    else if (flag === '--short') opts.short = true;
    else if (flag === '--no-build') opts.build = false;
    else if (flag === '--duration' || flag === '--instances' || flag === '--report-json') {
      const v = value(i, flag);
      i = v.next;
      if (flag === '--report-json') opts.reportJson = path.resolve(v.value);
      else {
        const n = Number(v.value);
        if (!Number.isInteger(n)) throw new DemoError(`${flag} must be a whole number, got ${JSON.stringify(v.value)}`);
        if (flag === '--duration') {
          if (n < 10 || n > 3600) throw new DemoError('--duration must be from 10 to 3600 seconds');
          opts.duration = n;
          durationGiven = true;
        } else {
          if (n < 2 || n > 9) throw new DemoError('--instances must be from 2 to 9');
          opts.instances = n;
        }
      }
    } else throw new DemoError(`unknown option ${arg} (see --help)`);
  }
  if (opts.short && !durationGiven) opts.duration = 12;
  return opts;
}

// ---------------------------------------------------------------------------------------------
// Output

const color = process.stdout.isTTY && !process.env.NO_COLOR;
const paint = (code) => (text) => (color ? `\x1b[${code}m${text}\x1b[0m` : String(text));
const bold = paint('1');
const dim = paint('2');
const red = paint('31');
const green = paint('32');
const yellow = paint('33');
const cyan = paint('36');

let epoch = Date.now();
const rel = (t) => `${((t - epoch) / 1000).toFixed(1)}s`;
const secs = (ms) => `${(ms / 1000).toFixed(ms < 10_000 ? 2 : 1)} s`;

function say(text = '') {
  process.stdout.write(`${text}\n`);
}

/**
 * One line of the live timeline. Lines wait 400 ms in a buffer and come out in time order:
 * the observer learns of some things (a term record) a little after others (an etcd key).
 */
const pendingEvents = [];
let eventFlusher;
function event(text, at = Date.now()) {
  pendingEvents.push({ at, text, seq: pendingEvents.length });
  eventFlusher ??= setInterval(() => flushEvents(Date.now() - 400), 100);
}

function flushEvents(upTo = Infinity) {
  pendingEvents.sort((a, b) => a.at - b.at || a.seq - b.seq);
  while (pendingEvents.length && pendingEvents[0].at <= upTo) {
    const { at, text } = pendingEvents.shift();
    say(`  ${dim(`+${rel(at)}`.padStart(8))}  ${text}`);
  }
  if (upTo === Infinity && eventFlusher) {
    clearInterval(eventFlusher);
    eventFlusher = undefined;
  }
}

function action(text) {
  event(`${cyan('▶')} ${bold(text)}`);
}

// ---------------------------------------------------------------------------------------------
// Everything we start, and its cleanup (also on Ctrl-C, errors and exit)

const children = new Set();
const tempDirs = new Set();
let interruptCount = 0;
let interruptedBySignal = false;
/** Aborts the script: Ctrl-C (or SIGTERM/SIGHUP), or an instance that died unexpectedly. */
const interruption = new AbortController();

process.on('exit', () => {
  for (const child of children) child.killNow();
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});
for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP']) {
  process.on(signal, () => {
    interruptCount++;
    if (interruptCount === 1) {
      interruptedBySignal = true;
      say(`\n${yellow(`${signal}: stopping everything (again to force)…`)}`);
      interruption.abort(new DemoError(`interrupted by ${signal}`));
    } else {
      say(red('forced stop'));
      process.exit(130);
    }
  });
}

/*
 * Children run under a tiny bash wrapper that then `exec`s the real program, so the pid we
 * hold is the program's own. Before exec it forks a watchdog holding the read end of a pipe
 * whose write end only this script has. If this script dies in any way, even SIGKILL where no
 * exit handler runs, the pipe reaches EOF and the watchdog SIGKILLs the child and removes its
 * directory. (The same trick as test/harness/etcd.ts.) Children get their own process group,
 * so Ctrl-C reaches only this script, which then stops them in order.
 * $1 = directory to remove on parent death (or ''), $2... = command line.
 */
const WATCHDOG = `
owner_dir="$1"; shift
child_pid=$$
exec 3<&0
(
  while kill -0 "$child_pid" 2>/dev/null; do
    read -r -t 1 -u 3 _
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then
      if kill -0 "$child_pid" 2>/dev/null; then
        kill -KILL "$child_pid"
        [ -n "$owner_dir" ] && rm -rf -- "$owner_dir"
      fi
      exit 0
    fi
  done
) >/dev/null 2>&1 &
exec "$@" </dev/null 3<&-
`;

class Child {
  constructor(name, command, args, { env, logFile, ownerDir = '' }) {
    this.name = name;
    this.logFile = logFile;
    const fd = openSync(logFile, 'a');
    this.proc = spawn('bash', ['-c', WATCHDOG, 'demo-watchdog', ownerDir, command, ...args], {
      env,
      stdio: ['pipe', fd, fd],
      detached: true,
    });
    closeSync(fd);
    this.pid = this.proc.pid;
    this.exit = undefined;
    this.exited = new Promise((resolve) => {
      const done = (code, signal) => {
        if (this.exit) return;
        this.exit = { code, signal, at: Date.now() };
        children.delete(this);
        this.proc.stdin?.destroy();
        resolve(this.exit);
      };
      this.proc.once('exit', done);
      this.proc.once('error', (err) => {
        writeFileSync(logFile, `demo: cannot start ${command}: ${err.message}\n`, { flag: 'a' });
        done(127, null);
      });
    });
    this.proc.stdin?.on('error', () => {});
    children.add(this);
  }

  get running() {
    return this.exit === undefined;
  }

  signal(signal) {
    if (!this.running) return false;
    try {
      process.kill(this.pid, signal);
      return true;
    } catch {
      return false;
    }
  }

  /** `signal`, then wait up to `graceMs` for the exit; SIGKILL after that. Resolves with the exit. */
  async stop(signal = 'SIGTERM', graceMs = 20_000) {
    if (!this.running) return { ...this.exit, forced: false };
    this.signal(signal);
    if (signal !== 'SIGKILL') this.signal('SIGCONT'); // a paused process would never act on it
    const timer = new Promise((resolve) => setTimeout(() => resolve('timeout'), graceMs).unref());
    if ((await Promise.race([this.exited, timer])) !== 'timeout') return { ...this.exit, forced: false };
    this.signal('SIGKILL');
    return { ...(await this.exited), forced: true };
  }

  killNow() {
    if (this.running) this.signal('SIGKILL');
  }

  logTail(lines = 25) {
    try {
      const text = readFileSync(this.logFile, 'utf8').trimEnd().split('\n');
      return text.slice(-lines).map((l) => `      ${l}`).join('\n');
    } catch {
      return '      (no log)';
    }
  }
}

function describeExit(exit) {
  if (!exit) return 'still running';
  return exit.signal ? `killed by ${exit.signal}` : `exited with code ${exit.code}`;
}

// ---------------------------------------------------------------------------------------------
// Small helpers

function sleep(ms, signal = interruption.signal) {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

async function freePorts(count) {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, HOST, () => resolve(server));
    })),
  );
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function run(command, args, options = {}) {
  return new Promise((resolve) => {
    const child = spawn(command, args, { cwd: root, stdio: 'inherit', ...options });
    child.on('error', (err) => {
      say(red(`demo: cannot run ${command}: ${err.message}`));
      resolve(127);
    });
    child.on('close', (code, signal) => resolve(code ?? (signal ? 128 : 1)));
  });
}

async function getJson(url, timeoutMs = 2_000) {
  const response = await fetch(url, { signal: AbortSignal.timeout(timeoutMs) });
  if (!response.ok) throw new Error(`HTTP ${response.status}`);
  return response.json();
}

function withTimeout(promise, ms, message) {
  let timer;
  const timeout = new Promise((_, reject) => (timer = setTimeout(() => reject(new DemoError(message)), ms)));
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function isExecutable(file) {
  try {
    accessSync(file, fsConstants.X_OK);
    return true;
  } catch {
    return false;
  }
}

// ---------------------------------------------------------------------------------------------
// Bootstrap: dependencies, etcd binary, build

async function bootstrap(opts, buildDir) {
  if (!existsSync(path.join(root, 'node_modules', '.bin', 'tsc'))) {
    const lock = existsSync(path.join(root, 'package-lock.json'));
    say(`demo: node_modules missing, running npm ${lock ? 'ci' : 'install'}`);
    if ((await run('npm', [lock ? 'ci' : 'install'])) !== 0) throw new DemoError('npm install failed (output above)');
  }
  if (!process.env.ETCD_HOSTS) {
    if ((await run('bash', [path.join(root, 'scripts', 'ensure-etcd.sh')])) !== 0) {
      throw new DemoError('etcd is not available (see ensure-etcd output above); or set ETCD_HOSTS to an etcd you have');
    }
  }
  if (opts.build) {
    const started = Date.now();
    const isDefault = path.resolve(buildDir) === path.join(root, 'build');
    const shown = path.relative(root, buildDir);
    say(`demo: building into ${shown && !shown.startsWith('..') ? shown : buildDir}…`);
    const code = isDefault
      ? await run(process.execPath, [path.join(root, 'scripts', 'build.mjs'), 'tsconfig.json'])
      : await run(path.join(root, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.json', '--outDir', buildDir, '--pretty', 'false']);
    if (code !== 0) throw new DemoError('build failed (tsc output above)');
    say(dim(`demo: built in ${secs(Date.now() - started)}`));
  }
  const main = path.join(buildDir, 'sample-app', 'main.js');
  if (!existsSync(main)) {
    throw new DemoError(`${main} not found: build first (npm run build, or run the demo without --no-build)`);
  }
}

// ---------------------------------------------------------------------------------------------
// A throwaway etcd

function etcdBinary() {
  const fromEnv = process.env.ETCD_BIN; // the etcd binary, or a directory holding it (as in ensure-etcd.sh)
  if (fromEnv) {
    const candidate = existsSync(fromEnv) && statSync(fromEnv).isDirectory() ? path.join(fromEnv, 'etcd') : fromEnv;
    if (isExecutable(candidate)) return candidate;
    throw new DemoError(`ETCD_BIN=${fromEnv} does not point at an etcd binary (or a directory holding one)`);
  }
  const which = spawnSync('bash', ['-c', 'command -v etcd'], { encoding: 'utf8' });
  const found = which.stdout.trim();
  if (found && isExecutable(found)) return found;
  if (isExecutable('/usr/bin/etcd')) return '/usr/bin/etcd';
  throw new DemoError('etcd binary not found (run "npm run ensure-etcd", or set ETCD_BIN or ETCD_HOSTS)');
}

async function startLocalEtcd(workDir) {
  const binary = etcdBinary();
  for (let attempt = 1; ; attempt++) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'nest-etcd-demo-etcd-'));
    tempDirs.add(dir);
    const [clientPort, peerPort] = await freePorts(2);
    const clientUrl = `http://${HOST}:${clientPort}`;
    const peerUrl = `http://${HOST}:${peerPort}`;
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith('ETCD_')));
    const child = new Child('etcd', binary, [
      '--name=demo', `--data-dir=${path.join(dir, 'data')}`,
      `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
      `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
      `--initial-cluster=demo=${peerUrl}`, '--initial-cluster-state=new',
      `--initial-cluster-token=demo-${randomBytes(4).toString('hex')}`,
      '--logger=zap', '--log-outputs=stderr', '--log-level=warn',
    ], { env, logFile: path.join(workDir, 'etcd.log'), ownerDir: dir });
    const stop = async () => {
      await child.stop('SIGTERM', 5_000);
      rmSync(dir, { recursive: true, force: true });
      tempDirs.delete(dir);
    };
    const deadline = Date.now() + 20_000;
    let problem = 'no answer';
    while (Date.now() < deadline && child.running) {
      try {
        const health = await getJson(`${clientUrl}/health`, 1_000);
        if (String(health.health) === 'true') return { endpoint: `${HOST}:${clientPort}`, dir, stop };
        problem = JSON.stringify(health);
      } catch (err) {
        problem = err.message;
      }
      await sleep(100);
    }
    const log = readFileSync(child.logFile, 'utf8');
    await stop();
    if (/address already in use/.test(log) && attempt < 3) continue;
    throw new DemoError(`etcd did not become healthy (${child.running ? problem : describeExit(child.exit)}):\n${log.split('\n').slice(-15).join('\n')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// The outside observer: a plain etcd3 client watching the cluster's namespace

class Observer {
  constructor(client, keys) {
    this.client = client;
    this.keys = keys;
    this.candidates = new Map(); // election key -> { identity, token }
    this.lockKeys = new Map(); // report lock key -> { identity, token }
    this.etcdLeader = null; // { identity, token, from }
    this.leaderHistory = []; // etcd's view: { identity, token, from, to }
    this.leaderTokens = new Set();
    this.runs = new Map();
    this.terms = new Map();
    this.reportWrites = []; // accepted writes, in etcd order: { token, writer, at }
    this.waiters = new Set();
    this.narrate = () => {};
  }

  async start() {
    this.watcher = await this.client.watch().prefix(this.keys.namespace).create();
    this.watcher.on('data', (response) => {
      for (const e of response.events) this.onEvent(String(e.type).toLowerCase(), e.kv);
      this.checkWaiters();
    });
    this.watcher.on('error', () => {}); // reconnects by itself
  }

  onEvent(type, kv) {
    const key = kv.key.toString();
    const value = kv.value.toString();
    const { keys } = this;
    if (key.startsWith(keys.electionPrefix)) {
      if (type === 'put') {
        const known = this.candidates.has(key);
        this.candidates.set(key, { identity: value, token: BigInt(kv.create_revision) });
        if (!known && this.etcdLeader) this.narrate('candidate', { identity: value });
      } else {
        const gone = this.candidates.get(key);
        this.candidates.delete(key);
        if (gone && this.etcdLeader && gone.token !== this.etcdLeader.token) this.narrate('candidate-gone', gone);
      }
      this.updateLeader();
    } else if (key.startsWith(keys.reportLockPrefix)) {
      if (type === 'put') this.lockKeys.set(key, { identity: value, token: BigInt(kv.create_revision) });
      else this.lockKeys.delete(key);
    } else if (key.startsWith(keys.runsPrefix) && type === 'put') {
      this.addRun(JSON.parse(value));
    } else if (key.startsWith(keys.termsPrefix) && type === 'put') {
      const term = JSON.parse(value);
      const known = this.terms.get(term.fencingToken);
      this.terms.set(term.fencingToken, term);
      if (!known) this.narrate('term-start', term);
      if (term.to !== undefined && known?.to === undefined) this.narrate('term-end', term);
    } else if (key === keys.reportValue && type === 'put') {
      const report = JSON.parse(value);
      this.reportWrites.push({ token: BigInt(report.fencingToken), writer: report.writer, at: report.writtenAt });
    }
  }

  addRun(run) {
    const known = this.runs.get(run.id);
    if (known && known.outcome !== 'running' && run.outcome === 'running') return;
    this.runs.set(run.id, run);
    if (run.outcome === 'refused' && known?.outcome !== 'refused') this.narrate('refused', run);
    if (run.leaderOnly && !known) this.narrate('leader-run', run);
  }

  /** The leader by etcd's rule: the candidate key with the lowest create revision. */
  updateLeader() {
    let oldest = null;
    for (const c of this.candidates.values()) if (!oldest || c.token < oldest.token) oldest = c;
    const current = this.etcdLeader;
    if ((current?.token ?? null) === (oldest?.token ?? null)) return;
    const now = Date.now();
    if (current) {
      current.to = now;
    }
    this.etcdLeader = oldest ? { ...oldest, from: now } : null;
    if (oldest) {
      this.leaderHistory.push(this.etcdLeader);
      this.leaderTokens.add(oldest.token.toString());
    }
    this.narrate('etcd-leader', this.etcdLeader);
  }

  /** Who holds the report lock (oldest key), or null. */
  get lockHolder() {
    let oldest = null;
    for (const c of this.lockKeys.values()) if (!oldest || c.token < oldest.token) oldest = c;
    return oldest;
  }

  /** Resolves with the first truthy value of `check()` (tested after every etcd event and every 200 ms). */
  waitFor(what, timeoutMs, check) {
    return new Promise((resolve, reject) => {
      const waiter = {
        check,
        done: (err, value) => {
          this.waiters.delete(waiter);
          clearTimeout(waiter.timer);
          clearInterval(waiter.poll);
          interruption.signal.removeEventListener('abort', waiter.abort);
          if (err) reject(err);
          else resolve(value);
        },
      };
      waiter.abort = () => waiter.done(interruption.signal.reason);
      waiter.timer = setTimeout(() => waiter.done(new DemoError(`timed out after ${secs(timeoutMs)} waiting for ${what}`)), timeoutMs);
      waiter.poll = setInterval(() => this.checkWaiters(), 200);
      if (interruption.signal.aborted) return waiter.done(interruption.signal.reason);
      interruption.signal.addEventListener('abort', waiter.abort, { once: true });
      this.waiters.add(waiter);
      this.checkWaiters();
    });
  }

  checkWaiters() {
    for (const waiter of [...this.waiters]) {
      let value;
      try {
        value = waiter.check();
      } catch (err) {
        waiter.done(err);
        continue;
      }
      if (value) waiter.done(undefined, value);
    }
  }

  /** Reads every record once more (some may have landed after the watch delivered its last event). */
  async reconcile() {
    const [runs, terms] = await Promise.all([
      this.client.getAll().prefix(this.keys.runsPrefix).strings(),
      this.client.getAll().prefix(this.keys.termsPrefix).strings(),
    ]);
    for (const value of Object.values(runs)) this.addRun(JSON.parse(value));
    for (const value of Object.values(terms)) {
      const term = JSON.parse(value);
      const known = this.terms.get(term.fencingToken);
      if (!known || known.to === undefined) this.terms.set(term.fencingToken, term);
    }
  }

  async close() {
    for (const waiter of [...this.waiters]) waiter.done(new DemoError('observer closed'));
    await this.watcher?.cancel().catch(() => {});
  }
}

// ---------------------------------------------------------------------------------------------
// The cluster of sample-app instances

class Instance {
  constructor(id, port, config) {
    this.id = id;
    this.port = port;
    this.url = `http://${HOST}:${port}`;
    this.config = config;
    this.lives = []; // { child, startedAt, readyAt }
    this.pauses = []; // { from, to }
    this.signals = []; // { signal, at }
    this.expectedExit = false;
  }

  get child() {
    return this.lives.at(-1)?.child;
  }

  get running() {
    return this.child?.running ?? false;
  }

  get paused() {
    const last = this.pauses.at(-1);
    return last !== undefined && last.to === undefined;
  }

  start() {
    const { buildDir, env, workDir } = this.config;
    this.expectedExit = false;
    const child = new Child(this.id, process.execPath, ['--enable-source-maps', path.join(buildDir, 'sample-app', 'main.js')], {
      env: { ...env, PORT: String(this.port), INSTANCE_ID: this.id, PEERS: this.config.peers.filter((p) => p !== this.url).join(',') },
      logFile: path.join(workDir, 'logs', `${this.id}.log`),
      ownerDir: workDir, // the logs go too if this script is killed outright
    });
    this.lives.push({ child, startedAt: Date.now() });
    return child;
  }

  async waitReady(timeoutMs) {
    const deadline = Date.now() + timeoutMs;
    const child = this.child;
    while (Date.now() < deadline) {
      if (!child.running) {
        throw new DemoError(`${this.id} ${describeExit(child.exit)} while starting; its log ends with:\n${child.logTail()}`);
      }
      try {
        const status = await getJson(`${this.url}/status`, 1_000);
        if (status.instance === this.id) {
          this.lives.at(-1).readyAt = Date.now();
          return;
        }
      } catch {
        // not listening yet
      }
      await sleep(150);
    }
    throw new DemoError(`${this.id} did not answer ${this.url}/status within ${secs(timeoutMs)}; its log ends with:\n${child.logTail()}`);
  }

  /** SIGSTOP / SIGCONT, recorded for the timeline. */
  signal(signal) {
    this.signals.push({ signal, at: Date.now() });
    if (signal === 'SIGSTOP') this.pauses.push({ from: Date.now() });
    if (signal === 'SIGCONT') {
      const pause = this.pauses.at(-1);
      if (pause && pause.to === undefined) pause.to = Date.now();
    }
    this.child?.signal(signal);
  }

  /** SIGTERM (SIGKILL after `graceMs`) or SIGKILL, recorded; resolves with the exit. */
  terminate(signal, graceMs = 20_000) {
    this.expectedExit = true;
    this.signals.push({ signal, at: Date.now() });
    const pause = this.pauses.at(-1);
    if (pause && pause.to === undefined) pause.to = Date.now();
    return this.child.stop(signal, graceMs);
  }

  /** When this instance's process stopped acting: a SIGKILL, or its exit. */
  lastMomentOf(life) {
    const exit = life.child.exit;
    if (!exit) return undefined;
    const kill = this.signals.find((s) => s.signal === 'SIGKILL' && s.at >= life.startedAt && s.at <= exit.at);
    return kill ? kill.at : exit.at;
  }
}

// ---------------------------------------------------------------------------------------------
// The script

async function scenario(ctx) {
  const { opts, observer, instances, ttl } = ctx;
  const D = opts.duration * 1_000;
  const scriptStart = Date.now();
  const alive = () => instances.filter((i) => i.running);
  const byId = (identity) => instances.find((i) => i.id === identity);
  const leaderNow = () => observer.etcdLeader;

  await observer.waitFor('a leader to be elected', 30_000, () => {
    const leader = leaderNow();
    return leader && observer.terms.has(leader.token.toString()) ? leader : null;
  });
  await sleep(Math.max(2_000, 0.12 * D));

  // --- 2. a paused lock holder: its stale write must be refused
  const stale = { attempts: 0, demonstrated: false };
  for (let attempt = 1; attempt <= 3 && !stale.demonstrated; attempt++) {
    stale.attempts = attempt;
    // Pause it inside the job (its run record says "running"), not while it is still acquiring:
    // a process that wakes up in the middle of acquiring finds its session gone and never runs.
    const target = await observer.waitFor('a report run in progress on an instance that is not the leader', 30_000, () => {
      const holder = observer.lockHolder;
      if (!holder) return null;
      const token = holder.token.toString();
      const running = [...observer.runs.values()].find((r) => r.job === 'report' && r.outcome === 'running' && r.fencingToken === token);
      const instance = running && byId(running.instance);
      return instance && instance.running && !instance.paused && instance.id !== leaderNow()?.identity ? { instance, token: holder.token } : null;
    });
    const holder = target.instance;
    const holderLock = { token: target.token };
    holder.signal('SIGSTOP');
    action(`SIGSTOP ${holder.id} in the middle of its report job, holding the "report" lock (token ${holderLock.token}): a stand-in for a long GC pause`);
    const overtaken = await observer.waitFor(
      'another instance to write the report after the paused holder lost its lock',
      ttl * 1_000 + 20_000,
      () => observer.reportWrites.find((w) => w.token > holderLock.token),
    );
    event(`${overtaken.writer} took the lock after ${holder.id}'s lease expired and wrote the report (token ${overtaken.token})`);
    holder.signal('SIGCONT');
    action(`SIGCONT ${holder.id}: it wakes up still "inside" its old lock and sends its write`);
    const late = await observer
      .waitFor(`${holder.id}'s report run with token ${holderLock.token} to finish`, 15_000, () => {
        const r = [...observer.runs.values()].find((x) => x.instance === holder.id && x.job === 'report' && x.fencingToken === holderLock.token.toString());
        return r && r.outcome !== 'running' ? r : null;
      })
      .catch((err) => {
        if (interruption.signal.aborted) throw err;
        return { outcome: 'unknown', detail: err.message };
      });
    if (late.outcome === 'refused') {
      stale.demonstrated = true;
      stale.run = late;
    } else if (late.outcome === 'written') {
      event(yellow(`${holder.id} had already written before the pause landed; trying again`));
    } else {
      event(yellow(`${holder.id}'s run ended ${late.outcome} (${late.detail ?? ''}); trying again`));
    }
  }
  ctx.stale = stale; // only now: an interrupted step is not a failed one
  await sleep(Math.max(1_500, 0.08 * D));

  // --- 2b. hand-over to a chosen instance (a rolling deploy moving leadership off a pod first)
  {
    const from = leaderNow();
    const others = alive().filter((i) => from && i.id !== from.identity);
    const target = others.at(-1);
    if (!from || !target) {
      event(yellow('no leader or no other instance: skipping the hand-over step'));
    } else {
      const askedAt = Date.now();
      action(`hand-over: ask ${from.identity} (the leader) to hand leadership to ${target.id}`);
      const response = await fetch(`${byId(from.identity).url}/handover?to=${encodeURIComponent(target.id)}`, { method: 'POST', signal: AbortSignal.timeout(10_000) });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new DemoError(`the hand-over to ${target.id} was refused: ${body.message ?? response.status}`);
      event(`${from.identity} handed over to ${body.to}${body.movedBack?.length ? ` (${body.movedBack.length} candidate(s) before it queued again)` : ''}`);
      const to = await observer.waitFor(`${target.id} leading after the hand-over`, 10_000, () => {
        const leader = leaderNow();
        return leader && leader.identity === target.id ? leader : null;
      });
      ctx.handovers.push({ kind: 'handover', from: from.identity, to: to.identity, signalAt: askedAt, etcdAt: to.from, fromToken: from.token, toToken: to.token, chosen: target.id });
      await sleep(Math.max(1_500, 0.08 * D));
    }
  }

  // --- 3. graceful stop of the leader
  const leaderA = leaderNow();
  if (!leaderA) throw new DemoError('no leader before the SIGTERM step');
  const a = byId(leaderA.identity);
  const termAt = Date.now();
  action(`SIGTERM ${a.id} (the leader): it should resign, and the next in line take over at once`);
  const aExit = a.terminate('SIGTERM').then((exit) => {
    event(`${a.id} ${exit.forced ? red(`did not exit within 20 s of SIGTERM (SIGKILLed)`) : describeExit(exit)}`);
    return exit;
  });
  const leaderB = await observer.waitFor(`a new leader after ${a.id}'s SIGTERM`, 20_000, () => {
    const leader = leaderNow();
    return leader && leader.identity !== a.id ? leader : null;
  });
  ctx.handovers.push({ kind: 'SIGTERM', from: a.id, to: leaderB.identity, signalAt: termAt, etcdAt: leaderB.from, fromToken: leaderA.token, toToken: leaderB.token });
  ctx.graceful = { instance: a.id, at: termAt, exit: await aExit };
  await sleep(Math.max(3_000, 0.2 * D));

  // --- 4. crash of the new leader
  if (alive().length < 2) {
    event(yellow('only one instance left: skipping the SIGKILL step (use --instances 3 or more)'));
  } else {
    const current = leaderNow();
    if (!current) throw new DemoError('no leader before the SIGKILL step');
    const b = byId(current.identity);
    const killAt = Date.now();
    const bExit = b.terminate('SIGKILL');
    action(`SIGKILL ${b.id} (the leader): no resignation; the others must wait for its session lease (TTL ${ttl} s) to expire`);
    const leaderC = await observer.waitFor(`a new leader after ${b.id}'s SIGKILL`, ttl * 1_000 + 20_000, () => {
      const leader = leaderNow();
      return leader && leader.identity !== b.id ? leader : null;
    });
    ctx.handovers.push({ kind: 'SIGKILL', from: b.id, to: leaderC.identity, signalAt: killAt, etcdAt: leaderC.from, fromToken: current.token, toToken: leaderC.token });
    await bExit;
  }
  const remaining = scriptStart + D - Date.now();
  await sleep(Math.max(3_000, remaining));
}

// ---------------------------------------------------------------------------------------------
// Checks: from the records in etcd only

function analyse(ctx) {
  const { observer, instances, stoppedAt } = ctx;
  const checks = [];
  const check = (name, ok, detail) => checks.push({ name, ok, detail });
  const byId = new Map(instances.map((i) => [i.id, i]));

  // When a record without an end stopped being true: the process's SIGKILL or exit, else the end of the demo.
  const endOfLife = (instanceId, from) => {
    const instance = byId.get(instanceId);
    const life = instance?.lives.find((l) => l.startedAt <= from && (l.child.exit === undefined || l.child.exit.at >= from));
    return (life && instance.lastMomentOf(life)) ?? stoppedAt;
  };

  const terms = [...observer.terms.values()]
    .map((t) => ({ ...t, end: t.to ?? endOfLife(t.instance, t.from), open: t.to === undefined }))
    .sort((a, b) => a.from - b.from);
  const leaderRuns = [...observer.runs.values()]
    .filter((r) => r.leaderOnly)
    .map((r) => ({ ...r, end: r.endedAt ?? endOfLife(r.instance, r.startedAt) }))
    .sort((a, b) => a.startedAt - b.startedAt);

  const overlaps = (list, startOf) => {
    const found = [];
    for (let i = 0; i < list.length; i++) {
      for (let j = i + 1; j < list.length && startOf(list[j]) < list[i].end; j++) {
        if (list[j].instance !== list[i].instance) found.push([list[i], list[j]]);
      }
    }
    return found;
  };

  const termOverlaps = overlaps(terms, (t) => t.from);
  check(
    'never two leaders at once (each instance\'s own view, from leader$)',
    terms.length > 0 && termOverlaps.length === 0,
    termOverlaps.length
      ? termOverlaps.slice(0, 3).map(([x, y]) => `${x.instance} (token ${x.fencingToken}, ${rel(x.from)}–${rel(x.end)}) overlaps ${y.instance} (token ${y.fencingToken}, ${rel(y.from)}–${rel(y.end)})`).join('; ')
      : `${terms.length} leadership terms, none overlapping`,
  );

  const unknownTokens = terms.filter((t) => !observer.leaderTokens.has(t.fencingToken));
  check(
    'every instance that thought it led held the oldest candidate key in etcd',
    unknownTokens.length === 0,
    unknownTokens.length
      ? unknownTokens.map((t) => `${t.instance} claimed token ${t.fencingToken}, which etcd never made leader`).join('; ')
      : `${observer.leaderHistory.length} leaders seen by the observer's watch, all claims match`,
  );

  const runOverlaps = overlaps(leaderRuns, (r) => r.startedAt);
  check(
    'no two instances ever ran a leader-only job at the same time',
    leaderRuns.length > 0 && runOverlaps.length === 0,
    runOverlaps.length
      ? runOverlaps.slice(0, 3).map(([x, y]) => `${x.id} ${x.job} ${rel(x.startedAt)}–${rel(x.end)} overlaps ${y.id} ${y.job} ${rel(y.startedAt)}–${rel(y.end)}`).join('; ')
      : `${leaderRuns.length} leader-only runs (@Interval and @Cron) on ${new Set(leaderRuns.map((r) => r.instance)).size} instances, none overlapping`,
  );

  // Once-per-firing jobs (issue 13): scripts/demo-jobs.mjs.
  for (const c of onceChecks([...observer.runs.values()])) check(c.name, c.ok, c.detail);

  let backwards = null;
  for (let i = 1; i < leaderRuns.length && !backwards; i++) {
    if (BigInt(leaderRuns[i].fencingToken) < BigInt(leaderRuns[i - 1].fencingToken)) backwards = [leaderRuns[i - 1], leaderRuns[i]];
  }
  check(
    'leader-only runs never went back to an older leadership (fencing tokens only grow)',
    !backwards,
    backwards ? `${backwards[1].id} ran with token ${backwards[1].fencingToken} after ${backwards[0].id} ran with ${backwards[0].fencingToken}` : 'ok',
  );

  let reportBackwards = null;
  for (let i = 1; i < observer.reportWrites.length && !reportBackwards; i++) {
    if (observer.reportWrites[i].token < observer.reportWrites[i - 1].token) reportBackwards = observer.reportWrites[i];
  }
  const refused = [...observer.runs.values()].filter((r) => r.outcome === 'refused');
  check(
    'the shared report only ever accepted growing fencing tokens',
    !reportBackwards && observer.reportWrites.length > 0,
    reportBackwards
      ? `accepted token ${reportBackwards.token} from ${reportBackwards.writer} after a higher one`
      : `${observer.reportWrites.length} writes accepted, ${refused.length} stale write${refused.length === 1 ? '' : 's'} refused`,
  );

  if (ctx.stale) {
    check(
      'a paused lock holder\'s stale write was refused by the fenced store',
      ctx.stale.demonstrated,
      ctx.stale.demonstrated
        ? `${ctx.stale.run.instance}: ${ctx.stale.run.detail}`
        : `not demonstrated in ${ctx.stale.attempts} attempt(s): the holder always wrote before the pause landed`,
    );
  }
  for (const h of ctx.handovers) {
    if (h.kind === 'handover') {
      check(`the hand-over from ${h.from} made the chosen instance ${h.chosen} leader`, h.to === h.chosen, `etcd made ${h.to} leader ${secs(h.etcdAt - h.signalAt)} after the request`);
    } else {
      check(`leadership moved after ${h.kind} of ${h.from}`, true, `etcd made ${h.to} leader ${secs(h.etcdAt - h.signalAt)} after the signal`);
    }
  }
  if (ctx.graceful) {
    const { exit } = ctx.graceful;
    check(
      `${ctx.graceful.instance} shut down cleanly on SIGTERM`,
      !exit.forced && exit.code === 0,
      `${describeExit(exit)} ${secs(exit.at - ctx.graceful.at)} after the signal`,
    );
  }
  for (const instance of instances) {
    for (const life of instance.lives) {
      const exit = life.child.exit;
      if (exit && exit.forced) check(`${instance.id} stopped when asked`, false, 'had to be SIGKILLed');
    }
    if (instance.unexpected) check(`${instance.id} kept running`, false, instance.unexpected);
  }
  return { checks, terms, leaderRuns, refused };
}

// ---------------------------------------------------------------------------------------------
// The printed summary

function printSummary(ctx, result) {
  const { observer, instances, stoppedAt } = ctx;
  const { terms } = result;
  say();
  say(bold('Who led when (each instance\'s own view; the observer\'s etcd view agrees, see checks)'));
  for (const t of terms) {
    const how = t.to === undefined ? (t.end < stoppedAt ? 'died' : 'until the end') : t.to >= ctx.finalStopAt ? 'until the final stop' : 'stepped down';
    say(`  ${t.instance.padEnd(8)} ${`${rel(t.from)} – ${rel(t.end)}`.padEnd(17)} ${secs(t.end - t.from).padStart(8)}  token ${t.fencingToken.padEnd(5)} ${dim(how)}`);
  }

  say();
  say(bold('Handovers'));
  if (ctx.handovers.length === 0) say('  none');
  for (const h of ctx.handovers) {
    const newTerm = terms.find((t) => t.fencingToken === h.toToken.toString());
    const oldTerm = terms.find((t) => t.fencingToken === h.fromToken.toString());
    const firstRun = result.leaderRuns.find((r) => r.fencingToken === h.toToken.toString());
    const gap = newTerm && oldTerm ? newTerm.from - oldTerm.end : undefined;
    say(
      `  ${h.kind.padEnd(7)} ${h.from} at +${rel(h.signalAt)} → ${bold(h.to)} led ${secs((newTerm?.from ?? h.etcdAt) - h.signalAt)} after the signal` +
        (gap !== undefined ? `, ${secs(gap)} after ${h.from} stopped leading` : '') +
        (firstRun ? `; its first leader-only job ${secs(firstRun.startedAt - (newTerm?.from ?? h.etcdAt))} later` : ''),
    );
    if (h.kind === 'SIGKILL') say(dim(`          (a crashed leader cannot resign: the others wait for its session lease, TTL ${ctx.ttl} s)`));
  }

  say();
  say(bold('Job runs per instance'));
  say(dim('  instance   @Interval  @Cron   report written  refused   ran leader-only jobs between'));
  for (const instance of instances) {
    const mine = [...observer.runs.values()].filter((r) => r.instance === instance.id);
    const count = (f) => mine.filter(f).length;
    const leaderOnly = mine.filter((r) => r.leaderOnly).sort((a, b) => a.startedAt - b.startedAt);
    const span = leaderOnly.length ? `${rel(leaderOnly[0].startedAt)} – ${rel(leaderOnly.at(-1).endedAt ?? leaderOnly.at(-1).startedAt)}` : '–';
    say(
      `  ${instance.id.padEnd(10)} ${String(count((r) => r.job === 'interval')).padStart(9)}  ${String(count((r) => r.job === 'cron')).padStart(5)}  ` +
        `${String(count((r) => r.outcome === 'written')).padStart(14)}  ${String(count((r) => r.outcome === 'refused')).padStart(7)}   ${span}`,
    );
  }

  say();
  printChart(ctx, result);
}

function printChart(ctx, result) {
  const { observer, instances, stoppedAt } = ctx;
  // A round number of seconds per column, so the labels every 10 columns are round too.
  const width = [250, 500, 1_000, 2_000, 5_000, 10_000, 30_000, 60_000].find((w) => (stoppedAt - epoch) / w <= 72) ?? 120_000;
  const columns = Math.max(10, Math.ceil((stoppedAt - epoch) / width));
  say(bold('Timeline') + dim(`  (one column per ${width / 1000} s)`));
  const at = (c) => epoch + c * width;
  const within = (from, to, c) => from < at(c + 1) && to >= at(c);
  const axis = Array.from({ length: columns }, (_, c) => (c % 10 === 0 ? '|' : '·')).join('');
  const labels = Array.from({ length: Math.ceil(columns / 10) }, (_, k) => `${(k * 10 * width) / 1000}s`.padEnd(10)).join('');
  say(`  ${' '.repeat(9)}${dim(labels)}`);
  say(`  ${' '.repeat(9)}${dim(axis)}`);
  for (const instance of instances) {
    let line = '';
    for (let c = 0; c < columns; c++) {
      const alive = instance.lives.some((l) => within(l.startedAt, instance.lastMomentOf(l) ?? stoppedAt, c));
      const paused = instance.pauses.some((p) => within(p.from, p.to ?? stoppedAt, c));
      const leading = result.terms.some((t) => t.instance === instance.id && within(t.from, t.end, c));
      const runs = [...observer.runs.values()].filter((r) => r.instance === instance.id && r.job === 'report' && within(r.endedAt ?? r.startedAt, r.endedAt ?? r.startedAt, c));
      let ch = alive ? '─' : ' ';
      if (alive && leading) ch = '█';
      else if (runs.some((r) => r.outcome === 'written') && alive) ch = 'r';
      if (paused) ch = 'z';
      if (runs.some((r) => r.outcome === 'refused')) ch = '✗';
      line += ch === '█' ? yellow(ch) : ch === '✗' ? red(ch) : ch === 'z' ? cyan(ch) : ch;
    }
    say(`  ${instance.id.padEnd(9)}${line}`);
  }
  const marks = Array.from({ length: columns }, () => ' ');
  for (const instance of instances) {
    for (const s of instance.signals) {
      const c = Math.min(columns - 1, Math.floor((s.at - epoch) / width));
      marks[c] = { SIGSTOP: 'S', SIGCONT: 'C', SIGTERM: 'T', SIGKILL: 'K' }[s.signal] ?? marks[c];
    }
  }
  say(`  ${'signals'.padEnd(9)}${cyan(marks.join(''))}`);
  say(dim(`  █ leader  ─ follower  r wrote the report  ✗ stale report write refused  z paused (SIGSTOP)`));
  say(dim(`  S/C SIGSTOP/SIGCONT  T SIGTERM  K SIGKILL  (blank: not running)`));
}

// ---------------------------------------------------------------------------------------------
// Main

async function main() {
  const opts = parseArgs(process.argv.slice(2));
  if (opts.help) {
    say(HELP);
    return 0;
  }
  const buildDir = path.resolve(root, process.env.DEMO_BUILD_DIR || 'build');
  await bootstrap(opts, buildDir);

  const { Etcd3 } = await import('etcd3');
  const { sampleKeys } = await import(pathToFileURL(path.join(buildDir, 'sample-app', 'sample.keys.js')).href);
  const ttl = Number(process.env.SESSION_TTL || 3);
  if (!Number.isInteger(ttl) || ttl < 2 || ttl > 60) throw new DemoError('SESSION_TTL must be a whole number of seconds from 2 to 60');

  const workDir = mkdtempSync(path.join(os.tmpdir(), 'nest-etcd-demo-'));
  mkdirSync(path.join(workDir, 'logs'));
  let keepWorkDir = false;
  const ctx = { opts, ttl, instances: [], handovers: [], stoppedAt: undefined };
  let etcd;
  let client;
  let observer;
  let shardSampler;
  let shardData;
  let failure;
  const generatedNamespace = !process.env.COORD_NAMESPACE;
  const namespace = process.env.COORD_NAMESPACE ?? `demo-${randomBytes(3).toString('hex')}/`;

  try {
    if (process.env.ETCD_HOSTS) {
      etcd = { endpoint: process.env.ETCD_HOSTS, external: true };
    } else {
      etcd = await startLocalEtcd(workDir);
    }
    const keys = sampleKeys(namespace);
    const ports = await freePorts(opts.instances);
    const peers = ports.map((p) => `http://${HOST}:${p}`);
    const env = { ...process.env, ETCD_HOSTS: etcd.endpoint, COORD_NAMESPACE: namespace, SESSION_TTL: String(ttl), NO_COLOR: '1' };
    delete env.NODE_TEST_CONTEXT; // set by node --test; a child would try to report to it
    const instanceConfig = { buildDir, env, workDir, peers };
    ctx.instances = ports.map((port, i) => new Instance(`app-${i + 1}`, port, instanceConfig));

    client = new Etcd3({ hosts: etcd.endpoint.split(',') });
    observer = new Observer(client, keys);
    ctx.observer = observer;
    // An unreachable ETCD_HOSTS would otherwise leave the watch below retrying forever.
    await withTimeout(client.get(keys.root), 10_000, `etcd at ${etcd.endpoint} does not answer`);
    await withTimeout(observer.start(), 10_000, `cannot watch ${namespace} in etcd at ${etcd.endpoint}`);
    shardSampler = await startShardSampler(client, namespace, buildDir);

    say();
    say(bold(`nest-etcd-coordination demo: ${opts.instances} instances, ~${opts.duration} s, session TTL ${ttl} s`));
    say(`  etcd        ${etcd.external ? `${etcd.endpoint} (from ETCD_HOSTS)` : `${etcd.endpoint} (throwaway, data in ${etcd.dir}, removed at exit)`}`);
    say(`  namespace   ${namespace}`);
    say(`  dashboard   ${bold(peers.at(-1) + '/')}  ${dim(`(any instance serves it: ${ports.join(', ')})`)}`);
    say(`  logs        ${path.join(workDir, 'logs')} ${dim('(removed at exit unless something fails)')}`);
    say();

    epoch = Date.now();
    observer.narrate = (kind, data) => narrate(ctx, kind, data);
    for (const instance of ctx.instances) {
      const child = instance.start();
      event(`${instance.id} starting (pid ${child.pid}, ${instance.url})`);
      watchExit(ctx, instance, child);
    }
    await Promise.all(ctx.instances.map((i) => i.waitReady(60_000)));
    event(`all ${opts.instances} instances answer /status`);

    await scenario(ctx);

    if (opts.stay) {
      for (const instance of ctx.instances.filter((i) => !i.running)) {
        const child = instance.start();
        watchExit(ctx, instance, child);
        event(`${instance.id} restarted (pid ${child.pid})`);
      }
      await Promise.all(ctx.instances.map((i) => i.waitReady(60_000)));
      flushEvents();
      say();
      say(bold(`The cluster stays up: open ${ctx.instances.at(-1).url}/ — stop an instance with kill <pid> (pids above) and watch.`));
      say(dim('Ctrl-C stops everything and prints the summary.'));
      await new Promise((resolve) => interruption.signal.addEventListener('abort', resolve, { once: true }));
    }
  } catch (err) {
    failure = err;
  }

  // --- stop everything, then judge from what etcd recorded
  ctx.finalStopAt = Date.now();
  if (ctx.instances.length) {
    const stopping = ctx.instances.filter((i) => i.running);
    if (stopping.length) event(`stopping ${stopping.map((i) => i.id).join(', ')} (SIGTERM)`);
    const exits = await Promise.all(stopping.map(async (i) => [i, await i.terminate('SIGTERM')]));
    for (const [instance, exit] of exits) {
      if (exit.forced || exit.code !== 0) instance.unexpected = `did not shut down cleanly on SIGTERM (${exit.forced ? 'had to be SIGKILLed' : describeExit(exit)})`;
    }
  }
  ctx.stoppedAt = Date.now();
  await new Promise((resolve) => setTimeout(resolve, 500)); // the last records' watch events
  flushEvents();
  let result;
  if (observer) {
    try {
      await observer.reconcile();
      shardData = await shardSampler?.stop();
    } catch (err) {
      failure ??= new DemoError(`could not read the records from etcd at the end: ${err.message}`);
    }
    await observer.close();
    if (observer.terms.size > 0) {
      result = analyse(ctx);
      if (shardData) result.checks.push(...shardChecks(ctx, shardData, secs));
      printSummary(ctx, result);
    }
  }
  if (client && etcd?.external && generatedNamespace) {
    await client.delete().prefix(namespace).catch(() => {});
    say(dim(`\ndeleted the demo's keys (${namespace}) from ${etcd.endpoint}`));
  }
  client?.close();
  if (etcd && !etcd.external) await etcd.stop();

  const interrupted = interruptedBySignal && failure === interruption.signal.reason;
  const checks = result?.checks ?? [];
  say();
  say(bold('Checks'));
  for (const c of checks) say(`  ${c.ok ? green('✔') : red('✘')} ${c.name}${c.detail ? dim(` — ${c.detail}`) : ''}`);
  if (checks.length === 0) say(red('  none could run: the cluster never got going'));
  const failedChecks = checks.filter((c) => !c.ok);
  let code = 0;
  if (failure && !(interrupted && opts.stay)) {
    code = interrupted ? 130 : 1;
    say();
    say(interrupted ? yellow(`demo: ${failure.message}`) : red(`demo FAILED: ${failure instanceof DemoError ? failure.message : failure.stack}`));
  }
  if (failedChecks.length) {
    code = 1;
    say();
    say(red(`demo FAILED: ${failedChecks.map((c) => c.name).join('; ')}`));
  } else if (code === 0 && checks.length) {
    say();
    say(green(bold(`demo passed: ${checks.length} checks`)));
  }
  if (code !== 0 && code !== 130) {
    keepWorkDir = true;
    say(`instance and etcd logs kept in ${path.join(workDir, 'logs')} and ${workDir}`);
  }
  if (opts.reportJson) {
    writeFileSync(opts.reportJson, `${JSON.stringify({
      ok: code === 0,
      failure: failure ? String(failure.message) : null,
      checks,
      instances: ctx.instances.map((i) => i.id),
      terms: result?.terms.map(({ instance, fencingToken, from, end, open }) => ({ instance, fencingToken, from, end, open })) ?? [],
      handovers: ctx.handovers.map((h) => ({ ...h, fromToken: String(h.fromToken), toToken: String(h.toToken) })),
      leaderOnlyRuns: result?.leaderRuns.length ?? 0,
      refusedWrites: result?.refused.length ?? 0,
    }, null, 2)}\n`);
  }
  if (!keepWorkDir) rmSync(workDir, { recursive: true, force: true });
  return code;
}

/** Notices instances that exit without being told to: the script cannot go on without them. */
function watchExit(ctx, instance, child) {
  void child.exited.then((exit) => {
    if (instance.expectedExit || instance.child !== child) return;
    instance.unexpected = `${describeExit(exit)} unexpectedly`;
    event(red(`${instance.id} ${instance.unexpected}; its log ends with:\n${child.logTail(15)}`));
    interruption.abort(new DemoError(`${instance.id} ${instance.unexpected}`));
  });
}

/** The live timeline, from what the observer sees in etcd. */
function narrate(ctx, kind, data) {
  const first = ctx.firstRunAfter ??= new Map();
  switch (kind) {
    case 'etcd-leader':
      if (data) event(`etcd: ${bold(data.identity)} holds the oldest candidate key (token ${data.token}) ${dim('→ it is the leader')}`);
      else event(yellow('etcd: no candidate left: no leader'));
      break;
    case 'candidate':
      event(`etcd: ${data.identity} joined the election queue`);
      break;
    case 'candidate-gone':
      event(`etcd: ${data.identity}'s candidate key is gone ${dim('(its session ended: it leaves the queue, and rejoins at the back)')}`);
      break;
    case 'term-start':
      event(`${green(data.instance)} knows it leads (leader$ emitted, token ${data.fencingToken})`, data.from);
      first.set(data.fencingToken, data.from);
      break;
    case 'term-end':
      event(`${data.instance} stopped leading after ${secs(data.to - data.from)} (token ${data.fencingToken})`, data.to);
      break;
    case 'leader-run': {
      const since = first.get(data.fencingToken);
      if (since !== undefined) {
        first.delete(data.fencingToken);
        event(`${data.instance} ran its first leader-only job (${data.job === 'interval' ? '@Interval' : '@Cron'}) ${secs(data.startedAt - since)} after taking over`, data.startedAt);
      }
      break;
    }
    case 'refused':
      event(`${red('REFUSED')}: ${data.instance}'s report write — ${data.detail}${data.lockHeldAtWrite === false ? dim(' (lock.isHeld() said false by then too; the fencing also covers a pause right after such a check)') : ''}`, data.endedAt);
      break;
  }
}

main().then(
  (code) => process.exit(code),
  (err) => {
    flushEvents();
    say(red(`demo: ${err instanceof DemoError ? err.message : err.stack}`));
    process.exit(1);
  },
);
