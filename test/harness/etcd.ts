// Throwaway etcd servers and clusters for tests: real etcd binaries on loopback ports with
// temporary data directories, always cleaned up (even if the test process is SIGKILLed).
//
//   const etcd = await startEtcd();            // single node
//   await etcd.etcdctl(['put', 'k', 'v']);
//   await etcd.stop();                         // removes the data dir
//
//   const cluster = await startEtcdCluster(3); // three members
//   const { index } = await cluster.leader();
//   await cluster.member(index).kill();
//
//   describe('locks', () => { const etcd = etcdFixture(); it('...', () => etcd().endpoint) });
//
// HARNESS_VERBOSE=1 echoes etcd's stderr (warn level and above) and child output to stderr.
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants as fsConstants, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { after, before } from 'node:test';

import { registerCleanup, signalPid } from './cleanup.js';
import { describeExit, type ExitInfo, LineTail, sleep, withTimeout } from './lines.js';

export type { ExitInfo } from './lines.js';

const HOST = '127.0.0.1';
const DEFAULT_START_TIMEOUT_MS = 15_000;
const STOP_GRACE_MS = 5_000;
const DEFAULT_ETCDCTL_TIMEOUT_MS = 15_000;
const START_ATTEMPTS = 3;
const VERBOSE = process.env.HARNESS_VERBOSE === '1';

// ---------------------------------------------------------------------------------------------
// Public types

export interface EtcdTlsOptions {
  /** Require clients to present a certificate signed by the test CA (`--client-cert-auth`). */
  clientCertAuth?: boolean;
}

export interface EtcdAuthOptions {
  /** Password of the `root` user that is created before `auth enable`. */
  rootPassword: string;
}

export interface EtcdOptions {
  /** Member name; also used in the temp dir name. Default: etcd-<n>. */
  name?: string;
  /** Appended to the etcd command line (e.g. ['--heartbeat-interval=50']). */
  extraArgs?: string[];
  /** Extra environment for the etcd process. Inherited ETCD_* variables are always removed. */
  env?: NodeJS.ProcessEnv;
  /** Serve clients over TLS with certificates from a throwaway CA (needs the openssl CLI). */
  tls?: boolean | EtcdTlsOptions;
  /** Create user root with this password and enable authentication once the server is up. */
  auth?: EtcdAuthOptions;
  /** How long to wait for /health to report true. Default 15 s. */
  startTimeoutMs?: number;
}

/** Files of the throwaway CA (all PEM). The client certificate's CN is `root`. */
export interface EtcdTlsFiles {
  dir: string;
  caFile: string;
  certFile: string;
  keyFile: string;
  clientCertFile: string;
  clientKeyFile: string;
  /** Contents, ready for an etcd3 `credentials` option: rootCertificate / certChain / privateKey. */
  ca: Buffer;
  clientCert: Buffer;
  clientKey: Buffer;
}

export interface EtcdCredentials {
  username: string;
  password: string;
}

export interface EtcdctlOptions {
  /** Kill etcdctl after this long (result has timedOut: true, code 124). Default 15 s. */
  timeoutMs?: number;
  /** Endpoints to use instead of the server's own (e.g. a proxy in front of it). */
  endpoints?: string[];
  /** Written to etcdctl's stdin. */
  input?: string;
  /** Pass the root credentials when auth is enabled. Default true. */
  auth?: boolean;
}

export interface EtcdctlResult {
  stdout: string;
  stderr: string;
  /** Exit code; 128 + signal number if killed, 124 if our timeout fired. */
  code: number;
  timedOut: boolean;
}

/** `etcdctl endpoint status` for one member. Ids are decimal strings: they exceed 2^53. */
export interface EtcdMemberStatus {
  memberId: string;
  leaderId: string;
  isLeader: boolean;
  raftTerm: number;
  raftIndex: number;
  revision: number;
  version: string;
  dbSize: number;
}

export interface EtcdServer {
  readonly name: string;
  /** "127.0.0.1:PORT", the form etcd3's `hosts` and etcdctl's `--endpoints` accept. */
  readonly endpoint: string;
  /** "http://127.0.0.1:PORT" (https with TLS). */
  readonly clientUrl: string;
  readonly clientPort: number;
  readonly peerUrl: string;
  readonly dataDir: string;
  /** PID of the current etcd process, undefined while not running. */
  readonly pid: number | undefined;
  readonly running: boolean;
  readonly paused: boolean;
  readonly tls: EtcdTlsFiles | undefined;
  readonly credentials: EtcdCredentials | undefined;
  /** SIGTERM, SIGKILL after 5 s, then delete the data dir. Idempotent. */
  stop(): Promise<void>;
  /** Send `signal` (default SIGKILL) and wait for the process to exit. Keeps the data dir. */
  kill(signal?: NodeJS.Signals): Promise<ExitInfo>;
  /** Start again on the same ports and data dir (gracefully stopping first if running). */
  restart(opts?: { waitForHealth?: boolean }): Promise<void>;
  /** SIGSTOP: the process keeps its sockets but answers nothing. */
  pause(): void;
  /** SIGCONT. */
  resume(): void;
  /** Resolves once GET /health says {"health":"true"} (needs a raft leader). */
  waitForHealth(timeoutMs?: number): Promise<void>;
  etcdctl(args: string[], opts?: EtcdctlOptions): Promise<EtcdctlResult>;
  status(timeoutMs?: number): Promise<EtcdMemberStatus>;
  /** The last lines etcd wrote to stderr (warn level and above). */
  logs(lines?: number): string;
}

export interface EtcdClusterOptions extends Omit<EtcdOptions, 'name'> {
  /** Prefix of the member names: <prefix>-0, <prefix>-1, ... Default: cluster-<n>. */
  name?: string;
}

export interface EtcdLeader {
  index: number;
  member: EtcdServer;
  memberId: string;
}

export interface EtcdCluster {
  readonly members: readonly EtcdServer[];
  /** "127.0.0.1:PORT" of every member, in member order. */
  readonly endpoints: string[];
  readonly clientUrls: string[];
  readonly tls: EtcdTlsFiles | undefined;
  readonly credentials: EtcdCredentials | undefined;
  member(index: number): EtcdServer;
  /** Waits until the running members agree on a leader that is one of them. */
  leader(opts?: { timeoutMs?: number }): Promise<EtcdLeader>;
  /** etcdctl against all members that are running. */
  etcdctl(args: string[], opts?: EtcdctlOptions): Promise<EtcdctlResult>;
  /** Stops every member and removes all data. Idempotent. */
  stop(): Promise<void>;
}

// ---------------------------------------------------------------------------------------------
// Binaries

export interface EtcdBinaries {
  etcd: string;
  etcdctl: string;
}

/** Same rules as scripts/ensure-etcd.sh: $ETCD_BIN (binary or directory), PATH, /usr/bin. */
export function resolveEtcdBinaries(): EtcdBinaries {
  const fromEnv = process.env.ETCD_BIN;
  let etcd: string | undefined;
  let etcdctl: string | undefined;
  if (fromEnv) {
    const dir = isDirectory(fromEnv) ? fromEnv : path.dirname(fromEnv);
    etcd = isDirectory(fromEnv) ? path.join(fromEnv, 'etcd') : fromEnv;
    etcdctl = path.join(dir, 'etcdctl');
  } else {
    etcd = findOnPath('etcd') ?? '/usr/bin/etcd';
    etcdctl = findOnPath('etcdctl') ?? '/usr/bin/etcdctl';
  }
  const missing = [etcd, etcdctl].filter((p) => !isExecutable(p));
  if (missing.length > 0) {
    throw new Error(
      `etcd binaries not found: ${missing.join(', ')}. Run "npm run ensure-etcd" ` +
        '(installs the Debian packages etcd-server and etcd-client as root) or set ETCD_BIN ' +
        'to the etcd binary or a directory holding etcd and etcdctl.',
    );
  }
  return { etcd, etcdctl };
}

let cachedBinaries: EtcdBinaries | undefined;
function binaries(): EtcdBinaries {
  return (cachedBinaries ??= resolveEtcdBinaries());
}

function isDirectory(p: string): boolean {
  try {
    return statSync(p).isDirectory();
  } catch {
    return false;
  }
}

function isExecutable(p: string): boolean {
  try {
    accessSync(p, fsConstants.X_OK);
    return !isDirectory(p);
  } catch {
    return false;
  }
}

function findOnPath(name: string): string | undefined {
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (dir && isExecutable(path.join(dir, name))) return path.join(dir, name);
  }
  return undefined;
}

/** etcd reads ETCD_* variables as flags and etcdctl ETCDCTL_*: never let the caller's leak in. */
function cleanEnv(extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('ETCD_') && !key.startsWith('ETCDCTL_')) env[key] = value;
  }
  return { ...env, ...extra };
}

// ---------------------------------------------------------------------------------------------
// Ports, directories, certificates

/**
 * `count` distinct free TCP ports on 127.0.0.1: bind port 0 (all at once, so the kernel hands
 * out different ports), read them, close. Another process can grab one before etcd binds it;
 * startEtcd/startEtcdCluster retry with fresh ports when etcd reports "address already in use".
 */
export async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => {
      return new Promise<net.Server>((resolve, reject) => {
        const server = net.createServer();
        server.once('error', reject);
        server.listen(0, HOST, () => resolve(server));
      });
    }),
  );
  const ports = servers.map((s) => (s.address() as net.AddressInfo).port);
  await Promise.all(servers.map((s) => new Promise((resolve) => s.close(resolve))));
  return ports;
}

function makeTempDir(label: string): string {
  const safe = label.replace(/[^A-Za-z0-9_.-]/g, '_');
  return mkdtempSync(path.join(os.tmpdir(), `etcd-${safe}-`));
}

function removeDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
}

/**
 * A throwaway CA plus a server certificate (SAN 127.0.0.1 / localhost) and a client
 * certificate (CN=root), written to `dir`. Uses the openssl CLI because Node cannot issue
 * X.509 certificates by itself.
 */
export function createTestCertificates(dir: string): EtcdTlsFiles {
  mkdirSync(dir, { recursive: true });
  const file = (name: string): string => path.join(dir, name);
  const openssl = (args: string[]): void => {
    const r = spawnSync('openssl', args, { cwd: dir, encoding: 'utf8' });
    if (r.error || r.status !== 0) {
      const why = r.error ? r.error.message : r.stderr;
      throw new Error(`openssl ${args.join(' ')} failed (is the openssl CLI installed? apt-get install -y openssl): ${why}`);
    }
  };
  const newKey = (name: string): void =>
    openssl(['genpkey', '-algorithm', 'EC', '-pkeyopt', 'ec_paramgen_curve:P-256', '-out', file(name)]);
  const issue = (name: string, subject: string, ext: string, signer: 'self' | 'ca'): void => {
    writeFileSync(file(`${name}.ext`), ext);
    openssl(['req', '-new', '-key', file(`${name}.key`), '-subj', subject, '-out', file(`${name}.csr`)]);
    const signing = signer === 'self' ? ['-signkey', file(`${name}.key`)] : ['-CA', file('ca.crt'), '-CAkey', file('ca.key'), '-CAcreateserial'];
    openssl(['x509', '-req', '-in', file(`${name}.csr`), ...signing, '-days', '7', '-extfile', file(`${name}.ext`), '-out', file(`${name}.crt`)]);
  };

  newKey('ca.key');
  issue('ca', '/CN=nest-etcd-coordination test CA', 'basicConstraints=critical,CA:TRUE\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\n', 'self');
  newKey('server.key');
  // clientAuth too: etcd dials its own client port (grpc-gateway) with the server certificate.
  issue('server', '/CN=etcd-test-server', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth,clientAuth\nsubjectAltName=IP:127.0.0.1,DNS:localhost\n', 'ca');
  newKey('client.key');
  issue('client', '/CN=root', 'basicConstraints=CA:FALSE\nkeyUsage=critical,digitalSignature\nextendedKeyUsage=clientAuth\n', 'ca');

  return {
    dir,
    caFile: file('ca.crt'),
    certFile: file('server.crt'),
    keyFile: file('server.key'),
    clientCertFile: file('client.crt'),
    clientKeyFile: file('client.key'),
    ca: readFileSync(file('ca.crt')),
    clientCert: readFileSync(file('client.crt')),
    clientKey: readFileSync(file('client.key')),
  };
}

// ---------------------------------------------------------------------------------------------
// etcdctl

interface EtcdctlContext {
  tls: EtcdTlsFiles | undefined;
  credentials: EtcdCredentials | undefined;
}

/** Runs etcdctl (API v3) against `endpoints`. Never throws for a non-zero exit: check `code`. */
export function runEtcdctl(
  endpoints: string[],
  args: string[],
  opts: EtcdctlOptions & Partial<EtcdctlContext> = {},
): Promise<EtcdctlResult> {
  const flags = [`--endpoints=${endpoints.join(',')}`];
  if (opts.tls) {
    flags.push(`--cacert=${opts.tls.caFile}`, `--cert=${opts.tls.clientCertFile}`, `--key=${opts.tls.clientKeyFile}`);
  }
  if (opts.credentials && opts.auth !== false) {
    flags.push(`--user=${opts.credentials.username}:${opts.credentials.password}`);
  }
  const timeoutMs = opts.timeoutMs ?? DEFAULT_ETCDCTL_TIMEOUT_MS;
  return new Promise((resolve, reject) => {
    const child = spawn(binaries().etcdctl, [...flags, ...args], {
      env: cleanEnv({ ETCDCTL_API: '3' }),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    let stdout = '';
    let stderr = '';
    let timedOut = false;
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill('SIGKILL');
    }, timeoutMs);
    child.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      const exit = timedOut ? 124 : (code ?? 128 + (signal ? os.constants.signals[signal] : 0));
      resolve({ stdout, stderr, code: exit, timedOut });
    });
    child.stdin.on('error', () => {}); // etcdctl may exit before reading its input
    child.stdin.end(opts.input ?? '');
  });
}

/** Parses `etcdctl endpoint status -w json`; ids become strings before JSON.parse rounds them. */
export function parseEndpointStatus(stdout: string): EtcdMemberStatus[] {
  const safe = stdout.replace(/"(\w+)":\s*(\d{16,})/g, '"$1":"$2"');
  const entries = JSON.parse(safe) as Array<{ Status: Record<string, unknown> & { header: Record<string, unknown> } }>;
  return entries.map(({ Status: s }) => {
    const memberId = String(s.header.member_id);
    const leaderId = String(s.leader);
    return {
      memberId,
      leaderId,
      isLeader: memberId === leaderId,
      raftTerm: Number(s.raftTerm ?? 0),
      raftIndex: Number(s.raftIndex ?? 0),
      revision: Number(s.header.revision ?? 0),
      version: String(s.version),
      dbSize: Number(s.dbSize ?? 0),
    };
  });
}

// ---------------------------------------------------------------------------------------------
// The etcd process

/*
 * etcd is started through a tiny bash wrapper that then `exec`s etcd, so the PID we hold is
 * etcd's own. Before exec it forks a watchdog holding the read end of a pipe whose write end
 * only this Node process has (etcd's stdin). If Node dies in any way, even SIGKILL where no
 * 'exit' handler runs, the pipe reaches EOF and the watchdog SIGKILLs etcd and removes the
 * temp dir. It polls etcd once a second and exits quietly when etcd is gone.
 * $1 = directory to remove on parent death, $2... = etcd command line.
 */
const WATCHDOG = `
owner_dir="$1"; shift
etcd_pid=$$
exec 3<&0
(
  while kill -0 "$etcd_pid" 2>/dev/null; do
    read -r -t 1 -u 3 _
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then
      if kill -0 "$etcd_pid" 2>/dev/null; then
        kill -KILL "$etcd_pid"
        rm -rf -- "$owner_dir"
      fi
      exit 0
    fi
  done
) >/dev/null 2>&1 &
exec "$@" </dev/null 3<&-
`;

interface NodeConfig {
  name: string;
  clientPort: number;
  peerPort: number;
  /** This member's own temp dir (holds data/); removed by stop(). */
  baseDir: string;
  /** Top-level temp dir the watchdog removes if the test process dies. */
  ownerDir: string;
  initialCluster: string;
  token: string;
  extraArgs: string[];
  env: NodeJS.ProcessEnv;
  tls: EtcdTlsFiles | undefined;
  clientCertAuth: boolean;
  credentials: EtcdCredentials | undefined;
  startTimeoutMs: number;
}

class EtcdStartError extends Error {
  constructor(
    message: string,
    readonly addressInUse: boolean,
  ) {
    super(message);
  }
}

class EtcdNode implements EtcdServer {
  private child: ChildProcess | undefined;
  private exitPromise: Promise<ExitInfo> | undefined;
  private lastExit: ExitInfo | undefined;
  private readonly stderr = new LineTail(80);
  private isPaused = false;
  private stopPromise: Promise<void> | undefined;
  private readonly unregister: () => void;

  constructor(private readonly cfg: NodeConfig) {
    this.unregister = registerCleanup(() => this.killSync());
  }

  get name(): string {
    return this.cfg.name;
  }
  get endpoint(): string {
    return `${HOST}:${this.cfg.clientPort}`;
  }
  get clientUrl(): string {
    return `${this.cfg.tls ? 'https' : 'http'}://${HOST}:${this.cfg.clientPort}`;
  }
  get clientPort(): number {
    return this.cfg.clientPort;
  }
  get peerUrl(): string {
    return `http://${HOST}:${this.cfg.peerPort}`;
  }
  get dataDir(): string {
    return path.join(this.cfg.baseDir, 'data');
  }
  get pid(): number | undefined {
    return this.running ? this.child?.pid : undefined;
  }
  get running(): boolean {
    return this.child !== undefined && this.lastExit === undefined;
  }
  get paused(): boolean {
    return this.running && this.isPaused;
  }
  get tls(): EtcdTlsFiles | undefined {
    return this.cfg.tls;
  }
  get credentials(): EtcdCredentials | undefined {
    return this.cfg.credentials;
  }

  logs(lines?: number): string {
    return this.stderr.text(lines);
  }

  /** Spawns etcd without waiting for it to become healthy. */
  spawnProcess(): void {
    if (this.stopPromise) throw new Error(`etcd ${this.name} was stopped; start a new server instead`);
    if (this.running) throw new Error(`etcd ${this.name} is already running (pid ${this.child?.pid})`);
    const child = spawn('bash', ['-c', WATCHDOG, 'etcd-watchdog', this.cfg.ownerDir, binaries().etcd, ...this.etcdArgs()], {
      env: cleanEnv(this.cfg.env),
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.child = child;
    this.lastExit = undefined;
    this.isPaused = false;
    this.exitPromise = new Promise<ExitInfo>((resolve) => {
      const exited = (info: ExitInfo): void => {
        if (this.child !== child || this.lastExit) return;
        this.lastExit = info;
        // EOF for the watchdog, which then sees etcd gone and exits without touching anything.
        child.stdin?.destroy();
        resolve(info);
      };
      child.once('exit', (code, signal) => exited({ code, signal }));
      // A failed spawn may never emit 'exit'.
      child.once('error', (err) => {
        this.stderr.push(`[harness] cannot run bash/etcd: ${err.message}\n`);
        if (child.pid === undefined) exited({ code: 127, signal: null });
      });
    });
    child.stdin?.on('error', () => {});
    child.stdout?.on('data', (d: Buffer) => this.record(d));
    child.stderr?.on('data', (d: Buffer) => this.record(d));
    // A forgotten server must not keep the test process alive: the 'exit' cleanup kills it.
    child.unref();
    for (const stream of [child.stdin, child.stdout, child.stderr]) (stream as unknown as net.Socket | null)?.unref();
  }

  async waitForHealth(timeoutMs = this.cfg.startTimeoutMs): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    let lastProblem = 'no answer yet';
    while (Date.now() < deadline) {
      if (!this.running) throw this.startError(`etcd ${this.name} ${describeExit(this.lastExit!)} before becoming healthy`);
      try {
        const body = await this.get('/health', Math.min(1_000, Math.max(deadline - Date.now(), 1)));
        if (/"health"\s*:\s*"true"/.test(body)) return;
        lastProblem = `/health answered ${body.trim()}`;
      } catch (err) {
        lastProblem = (err as Error).message;
      }
      await sleep(100);
    }
    throw this.startError(`etcd ${this.name} not healthy at ${this.clientUrl} within ${timeoutMs} ms (${lastProblem})`);
  }

  /** First start: spawn, wait for health, then set up auth if asked. */
  async start(auth: EtcdAuthOptions | undefined): Promise<void> {
    this.spawnProcess();
    await this.waitForHealth();
    if (auth) await enableAuth(this, auth);
  }

  kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo> {
    if (signal === 'SIGSTOP' || signal === 'SIGCONT') {
      throw new Error(`use pause()/resume() for ${signal}`);
    }
    return this.terminate(signal);
  }

  async restart(opts: { waitForHealth?: boolean } = {}): Promise<void> {
    if (this.running) await this.terminate('SIGTERM');
    this.spawnProcess();
    if (opts.waitForHealth !== false) await this.waitForHealth();
  }

  pause(): void {
    this.requireRunning('pause');
    signalPid(this.child?.pid, 'SIGSTOP');
    this.isPaused = true;
  }

  resume(): void {
    this.requireRunning('resume');
    signalPid(this.child?.pid, 'SIGCONT');
    this.isPaused = false;
  }

  stop(): Promise<void> {
    return this.stopWith('SIGTERM');
  }

  /** stop() with a choice of first signal; the cluster uses SIGKILL (see Cluster.stop). */
  stopWith(signal: 'SIGTERM' | 'SIGKILL'): Promise<void> {
    this.stopPromise ??= (async () => {
      try {
        if (this.running) await this.terminate(signal);
      } finally {
        removeDir(this.cfg.baseDir);
        this.unregister();
      }
    })();
    return this.stopPromise;
  }

  etcdctl(args: string[], opts: EtcdctlOptions = {}): Promise<EtcdctlResult> {
    return runEtcdctl(opts.endpoints ?? [this.clientUrl], args, { ...opts, tls: this.cfg.tls, credentials: this.cfg.credentials });
  }

  async status(timeoutMs = 5_000): Promise<EtcdMemberStatus> {
    const seconds = Math.max(1, Math.round(timeoutMs / 1000));
    const r = await this.etcdctl(['endpoint', 'status', '-w', 'json', `--command-timeout=${seconds}s`], { timeoutMs: timeoutMs + 2_000 });
    if (r.code !== 0) throw new Error(`etcdctl endpoint status on ${this.name} failed (${r.code}): ${r.stderr.trim()}`);
    const [status] = parseEndpointStatus(r.stdout);
    if (!status) throw new Error(`etcdctl endpoint status on ${this.name} printed no status: ${r.stdout}`);
    return status;
  }

  /** The synchronous last resort used at process exit. */
  killSync(): void {
    if (this.running) signalPid(this.child?.pid, 'SIGKILL');
    removeDir(this.cfg.ownerDir);
  }

  private etcdArgs(): string[] {
    const { cfg } = this;
    const args = [
      `--name=${cfg.name}`,
      `--data-dir=${this.dataDir}`,
      `--listen-client-urls=${this.clientUrl}`,
      `--advertise-client-urls=${this.clientUrl}`,
      `--listen-peer-urls=${this.peerUrl}`,
      `--initial-advertise-peer-urls=${this.peerUrl}`,
      `--initial-cluster=${cfg.initialCluster}`,
      '--initial-cluster-state=new',
      `--initial-cluster-token=${cfg.token}`,
      // zap at warn level: quiet unless something is wrong, and what it says ends up in errors.
      '--logger=zap',
      '--log-outputs=stderr',
      '--log-level=warn',
    ];
    if (cfg.tls) {
      args.push(`--cert-file=${cfg.tls.certFile}`, `--key-file=${cfg.tls.keyFile}`);
      if (cfg.clientCertAuth) args.push('--client-cert-auth', `--trusted-ca-file=${cfg.tls.caFile}`);
    }
    return [...args, ...cfg.extraArgs];
  }

  /** Signal, wait for exit; escalate to SIGKILL after STOP_GRACE_MS. */
  private async terminate(signal: NodeJS.Signals): Promise<ExitInfo> {
    if (!this.running || !this.exitPromise) return this.lastExit ?? { code: null, signal: null };
    const pid = this.child?.pid;
    signalPid(pid, signal);
    // A stopped process would only act on the signal once continued.
    if (this.isPaused && signal !== 'SIGKILL') signalPid(pid, 'SIGCONT');
    this.isPaused = false;
    try {
      return await withTimeout(this.exitPromise, STOP_GRACE_MS, () => 'grace period over');
    } catch {
      signalPid(pid, 'SIGKILL');
      return withTimeout(this.exitPromise, STOP_GRACE_MS, () => `etcd ${this.name} (pid ${pid}) survived SIGKILL`);
    }
  }

  private requireRunning(what: string): void {
    if (!this.running) throw new Error(`cannot ${what} etcd ${this.name}: not running`);
  }

  private record(chunk: Buffer): void {
    const lines = this.stderr.push(chunk);
    if (VERBOSE) for (const line of lines) process.stderr.write(`[etcd ${this.name}] ${line}\n`);
  }

  private startError(message: string): EtcdStartError {
    const logs = this.logs(25);
    return new EtcdStartError(`${message}${logs ? `\n--- last etcd output ---\n${logs}` : ''}`, /address already in use/.test(logs));
  }

  private get(urlPath: string, timeoutMs: number): Promise<string> {
    const { tls } = this.cfg;
    const client = tls ? https : http;
    const options: https.RequestOptions = { host: HOST, port: this.cfg.clientPort, path: urlPath, timeout: timeoutMs, agent: false };
    if (tls) Object.assign(options, { ca: tls.ca, cert: tls.clientCert, key: tls.clientKey });
    return new Promise((resolve, reject) => {
      const req = client.get(options, (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d: string) => (body += d));
        res.on('end', () => resolve(body));
        res.on('error', reject);
      });
      req.on('timeout', () => req.destroy(new Error(`GET ${urlPath} timed out`)));
      req.on('error', reject);
    });
  }
}

async function enableAuth(server: EtcdServer, auth: EtcdAuthOptions): Promise<void> {
  const steps = [
    ['user', 'add', 'root', `--new-user-password=${auth.rootPassword}`],
    ['user', 'grant-role', 'root', 'root'],
    ['auth', 'enable'],
  ];
  for (const step of steps) {
    // Not authenticated yet: auth is only on after the last step.
    const r = await server.etcdctl(step, { auth: false });
    if (r.code !== 0) throw new Error(`etcdctl ${step.slice(0, 2).join(' ')} failed: ${r.stderr.trim() || r.stdout.trim()}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Public factories

let serial = 0;

function tlsSettings(tls: EtcdOptions['tls']): { enabled: boolean; clientCertAuth: boolean } {
  if (!tls) return { enabled: false, clientCertAuth: false };
  return { enabled: true, clientCertAuth: tls === true ? false : tls.clientCertAuth === true };
}

/** Retries `attempt` with fresh ports when etcd lost the race for one of them. */
async function withPortRetries<T>(attempt: () => Promise<T>): Promise<T> {
  for (let i = 1; ; i++) {
    try {
      return await attempt();
    } catch (err) {
      if (!(err instanceof EtcdStartError && err.addressInUse) || i >= START_ATTEMPTS) throw err;
    }
  }
}

/** Starts a single-node etcd on free loopback ports with a temp data dir. */
export function startEtcd(opts: EtcdOptions = {}): Promise<EtcdServer> {
  const name = opts.name ?? `etcd-${++serial}`;
  const tls = tlsSettings(opts.tls);
  return withPortRetries(async () => {
    const baseDir = makeTempDir(name);
    const [clientPort, peerPort] = await freePorts(2);
    let node: EtcdNode | undefined;
    try {
      const certs = tls.enabled ? createTestCertificates(path.join(baseDir, 'certs')) : undefined;
      node = new EtcdNode({
        name,
        clientPort: clientPort!,
        peerPort: peerPort!,
        baseDir,
        ownerDir: baseDir,
        initialCluster: `${name}=http://${HOST}:${peerPort}`,
        token: `${name}-${randomBytes(6).toString('hex')}`,
        extraArgs: opts.extraArgs ?? [],
        env: opts.env ?? {},
        tls: certs,
        clientCertAuth: tls.clientCertAuth,
        credentials: opts.auth ? { username: 'root', password: opts.auth.rootPassword } : undefined,
        startTimeoutMs: opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
      });
      await node.start(opts.auth);
      return node;
    } catch (err) {
      if (node) await node.stop();
      else removeDir(baseDir);
      throw err;
    }
  });
}

class Cluster implements EtcdCluster {
  private stopPromise: Promise<void> | undefined;

  constructor(
    readonly members: readonly EtcdNode[],
    private readonly dir: string,
    private readonly unregister: () => void,
  ) {}

  get endpoints(): string[] {
    return this.members.map((m) => m.endpoint);
  }
  get clientUrls(): string[] {
    return this.members.map((m) => m.clientUrl);
  }
  get tls(): EtcdTlsFiles | undefined {
    return this.members[0]?.tls;
  }
  get credentials(): EtcdCredentials | undefined {
    return this.members[0]?.credentials;
  }

  member(index: number): EtcdServer {
    const m = this.members[index];
    if (!m) throw new RangeError(`no member ${index}: the cluster has ${this.members.length}`);
    return m;
  }

  etcdctl(args: string[], opts: EtcdctlOptions = {}): Promise<EtcdctlResult> {
    const urls = this.members.filter((m) => m.running && !m.paused).map((m) => m.clientUrl);
    return runEtcdctl(opts.endpoints ?? urls, args, { ...opts, tls: this.tls, credentials: this.credentials });
  }

  async leader(opts: { timeoutMs?: number } = {}): Promise<EtcdLeader> {
    const deadline = Date.now() + (opts.timeoutMs ?? 15_000);
    let last = 'no member answered';
    for (;;) {
      const found = await this.tryFindLeader();
      if (typeof found !== 'string') return found;
      last = found;
      if (Date.now() >= deadline) throw new Error(`no agreed raft leader within ${opts.timeoutMs ?? 15_000} ms: ${last}`);
      await sleep(200);
    }
  }

  stop(): Promise<void> {
    this.stopPromise ??= (async () => {
      try {
        // SIGKILL, not SIGTERM: a leader that is asked to stop first tries to hand leadership
        // to a follower, which is stopping too, and stalls until the 5 s grace period ends.
        // The data is thrown away anyway, so there is nothing a graceful stop would protect.
        await Promise.all(this.members.map((m) => m.stopWith('SIGKILL')));
      } finally {
        removeDir(this.dir);
        this.unregister();
      }
    })();
    return this.stopPromise;
  }

  /** A leader, or a string saying why there is none (yet). */
  private async tryFindLeader(): Promise<EtcdLeader | string> {
    const live = this.members.map((m, index) => ({ m, index })).filter(({ m }) => m.running && !m.paused);
    const answers = await Promise.all(
      live.map(async ({ m, index }) => ({ index, status: await m.status(2_000).catch(() => undefined) })),
    );
    const ok = answers.filter((a): a is { index: number; status: EtcdMemberStatus } => a.status !== undefined);
    if (ok.length === 0) return 'no member answered';
    const leaderIds = new Set(ok.map((a) => a.status.leaderId));
    if (leaderIds.size !== 1) return `members disagree: ${[...leaderIds].join(' vs ')}`;
    const leader = ok.find((a) => a.status.isLeader);
    if (!leader) return `leader ${[...leaderIds][0]} is not among the running members`;
    return { index: leader.index, member: this.members[leader.index]!, memberId: leader.status.memberId };
  }
}

/** Starts a `size`-member cluster (default 3) on loopback, all members started together. */
export function startEtcdCluster(size = 3, opts: EtcdClusterOptions = {}): Promise<EtcdCluster> {
  if (!Number.isInteger(size) || size < 1) throw new RangeError(`cluster size must be a positive integer, got ${size}`);
  const prefix = opts.name ?? `cluster-${++serial}`;
  const tls = tlsSettings(opts.tls);
  return withPortRetries(async () => {
    const dir = makeTempDir(prefix);
    const unregister = registerCleanup(() => removeDir(dir));
    const members: EtcdNode[] = [];
    try {
      const ports = await freePorts(size * 2);
      const names = Array.from({ length: size }, (_, i) => `${prefix}-${i}`);
      const initialCluster = names.map((n, i) => `${n}=http://${HOST}:${ports[size + i]}`).join(',');
      const token = `${prefix}-${randomBytes(6).toString('hex')}`;
      const certs = tls.enabled ? createTestCertificates(path.join(dir, 'certs')) : undefined;
      for (let i = 0; i < size; i++) {
        const baseDir = path.join(dir, names[i]!);
        mkdirSync(baseDir);
        members.push(
          new EtcdNode({
            name: names[i]!,
            clientPort: ports[i]!,
            peerPort: ports[size + i]!,
            baseDir,
            ownerDir: dir,
            initialCluster,
            token,
            extraArgs: opts.extraArgs ?? [],
            env: opts.env ?? {},
            tls: certs,
            clientCertAuth: tls.clientCertAuth,
            credentials: opts.auth ? { username: 'root', password: opts.auth.rootPassword } : undefined,
            startTimeoutMs: opts.startTimeoutMs ?? DEFAULT_START_TIMEOUT_MS,
          }),
        );
      }
      // Members must start together: none becomes healthy before a quorum has joined.
      for (const m of members) m.spawnProcess();
      await Promise.all(members.map((m) => m.waitForHealth()));
      if (opts.auth) await enableAuth(members[0]!, opts.auth);
      return new Cluster(members, dir, unregister);
    } catch (err) {
      await Promise.all(members.map((m) => m.stopWith('SIGKILL')));
      removeDir(dir);
      unregister();
      throw err;
    }
  });
}

// ---------------------------------------------------------------------------------------------
// node:test integration

/**
 * One etcd for the enclosing describe() (or the whole file at top level): started in
 * `before`, stopped in `after`. Returns an accessor, because the server only exists once
 * the hook ran:
 *
 *   describe('mutex', () => {
 *     const etcd = etcdFixture();
 *     it('locks', async () => { const client = new Etcd3({ hosts: etcd().endpoint }); ... });
 *   });
 */
export function etcdFixture(opts: EtcdOptions = {}): () => EtcdServer {
  let server: EtcdServer | undefined;
  before(async () => {
    server = await startEtcd(opts);
  });
  after(async () => {
    await server?.stop();
  });
  return () => {
    if (!server) throw new Error('etcdFixture: no server yet; call the accessor inside a test or hook, not while declaring tests');
    return server;
  };
}

/** Like etcdFixture, for a cluster. */
export function etcdClusterFixture(size = 3, opts: EtcdClusterOptions = {}): () => EtcdCluster {
  let cluster: EtcdCluster | undefined;
  before(async () => {
    cluster = await startEtcdCluster(size, opts);
  });
  after(async () => {
    await cluster?.stop();
  });
  return () => {
    if (!cluster) throw new Error('etcdClusterFixture: no cluster yet; call the accessor inside a test or hook');
    return cluster;
  };
}

/** Runs `fn` with a fresh single-node etcd that is stopped afterwards, whatever happens. */
export async function withEtcd<T>(fn: (etcd: EtcdServer) => Promise<T> | T, opts: EtcdOptions = {}): Promise<T> {
  const etcd = await startEtcd(opts);
  try {
    return await fn(etcd);
  } finally {
    await etcd.stop();
  }
}
