import { spawn, type ChildProcess } from 'node:child_process';
import { accessSync, constants as fsConstants, mkdtempSync, rmSync, statSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { TestingMessages } from '../coordination.messages.js';

/** Options of {@link startEtcd}. */
export interface StartEtcdOptions {
  /** The etcd binary, or a directory holding it. Default: `$ETCD_BIN`, then `etcd` on PATH, then /usr/bin/etcd. */
  binary?: string;
  /** How long etcd may take to become healthy (ms, default 20000). */
  startTimeoutMs?: number;
  /** Extra etcd flags, e.g. `['--auto-compaction-retention=1']`. */
  extraArgs?: string[];
}

/** A running throwaway etcd: single member, loopback, temporary data directory. */
export interface ThrowawayEtcd {
  /** `127.0.0.1:<port>`: pass it as `hosts` to `CoordinationModule.forRoot`. */
  readonly endpoint: string;
  /** `http://127.0.0.1:<port>` (for etcdctl `--endpoints`). */
  readonly clientUrl: string;
  /** The etcd process id. */
  readonly pid: number;
  /** Stops etcd (SIGTERM, SIGKILL after 5 s) and removes its data directory. Idempotent. */
  stop(): Promise<void>;
}

const HOST = '127.0.0.1';
const STOP_GRACE_MS = 5_000;
const running = new Set<() => void>();
let exitHookInstalled = false;

/**
 * Kills etcd when our process goes away, even by SIGKILL: a background
 * subshell reads our end of a pipe, and EOF while etcd still runs (we died)
 * makes it kill etcd and remove the data directory. The shell then execs
 * etcd, so the child's pid is etcd's. $1 = directory, $2... = etcd command line.
 */
const WATCHDOG = `
dir="$1"; shift
etcd_pid=$$
exec 3<&0
(
  while kill -0 "$etcd_pid" 2>/dev/null; do
    read -r -t 1 -u 3 _
    rc=$?
    if [ "$rc" -ne 0 ] && [ "$rc" -le 128 ]; then
      if kill -0 "$etcd_pid" 2>/dev/null; then kill -KILL "$etcd_pid"; rm -rf -- "$dir"; fi
      exit 0
    fi
  done
) >/dev/null 2>&1 &
exec "$@" </dev/null 3<&-
`;

function isExecutable(file: string): boolean {
  try {
    accessSync(file, fsConstants.X_OK);
    return !statSync(file).isDirectory();
  } catch {
    return false;
  }
}

/** `binary`, `$ETCD_BIN` (file or directory), `etcd` on PATH, /usr/bin/etcd; the first executable one. */
export function findEtcdBinary(binary = process.env.ETCD_BIN): string {
  const candidates: string[] = [];
  if (binary) {
    let isDir = false;
    try {
      isDir = statSync(binary).isDirectory();
    } catch {
      // Reported below as not found.
    }
    candidates.push(isDir ? path.join(binary, 'etcd') : binary);
  } else {
    for (const dir of (process.env.PATH ?? '').split(path.delimiter)) if (dir) candidates.push(path.join(dir, 'etcd'));
    candidates.push('/usr/bin/etcd', '/usr/local/bin/etcd');
  }
  const found = candidates.find(isExecutable);
  if (!found) throw new Error(TestingMessages.etcdNotFound(binary ? candidates : ['$ETCD_BIN', 'etcd on PATH', '/usr/bin/etcd', '/usr/local/bin/etcd']));
  return found;
}

async function freePorts(count: number): Promise<number[]> {
  const servers = await Promise.all(
    Array.from({ length: count }, () => new Promise<net.Server>((resolve, reject) => {
      const server = net.createServer();
      server.once('error', reject);
      server.listen(0, HOST, () => resolve(server));
    })),
  );
  const ports = servers.map((server) => (server.address() as net.AddressInfo).port);
  await Promise.all(servers.map((server) => new Promise((resolve) => server.close(resolve))));
  return ports;
}

function health(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const req = http.get({ host: HOST, port, path: '/health', timeout: 1_000, agent: false }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => (body += chunk));
      res.on('end', () => resolve(/"health"\s*:\s*"true"/.test(body)));
      res.on('error', () => resolve(false));
    });
    req.on('timeout', () => req.destroy());
    req.on('error', () => resolve(false));
  });
}

function installExitHook(): void {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  // On 'exit' only synchronous work runs: SIGKILL and rmSync.
  process.on('exit', () => {
    for (const kill of [...running]) kill();
  });
}

/** etcd reads ETCD_* variables as flags: never let the caller's leak in. */
function cleanEnv(): NodeJS.ProcessEnv {
  return Object.fromEntries(Object.entries(process.env).filter(([key]) => !key.startsWith('ETCD_')));
}

/**
 * Starts a throwaway single-member etcd on free loopback ports with a
 * temporary data directory, for end-to-end tests of your application against
 * a real etcd. Resolves once etcd is healthy. `stop()` always removes the
 * data directory; etcd is also killed (and its directory removed) when the
 * process exits, even when it is killed.
 *
 * Needs the etcd binary: `$ETCD_BIN`, or `etcd` on PATH (Debian/Ubuntu:
 * `apt-get install etcd-server`; macOS: `brew install etcd`).
 */
export async function startEtcd(options: StartEtcdOptions = {}): Promise<ThrowawayEtcd> {
  const binary = findEtcdBinary(options.binary);
  for (let attempt = 1; ; attempt++) {
    try {
      return await startOnce(binary, options);
    } catch (err) {
      // Another process took one of the ports between our probe and etcd's bind.
      if (attempt >= 3 || !/address already in use/.test((err as Error).message)) throw err;
    }
  }
}

async function startOnce(binary: string, options: StartEtcdOptions): Promise<ThrowawayEtcd> {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'nest-etcd-coordination-etcd-'));
  const [clientPort, peerPort] = await freePorts(2);
  const clientUrl = `http://${HOST}:${clientPort}`;
  const peerUrl = `http://${HOST}:${peerPort}`;
  const args = [
    '--name=throwaway', `--data-dir=${path.join(dir, 'data')}`,
    `--listen-client-urls=${clientUrl}`, `--advertise-client-urls=${clientUrl}`,
    `--listen-peer-urls=${peerUrl}`, `--initial-advertise-peer-urls=${peerUrl}`,
    `--initial-cluster=throwaway=${peerUrl}`, '--initial-cluster-state=new',
    `--initial-cluster-token=throwaway-${process.pid}-${clientPort}`,
    '--logger=zap', '--log-outputs=stderr', '--log-level=warn', ...(options.extraArgs ?? []),
  ];
  const child: ChildProcess = spawn('bash', ['-c', WATCHDOG, 'etcd-watchdog', dir, binary, ...args], { env: cleanEnv(), stdio: ['pipe', 'ignore', 'pipe'] });
  let logs = '';
  child.stderr?.on('data', (chunk: Buffer) => (logs = (logs + chunk.toString('utf8')).slice(-4_000)));
  child.stdin?.on('error', () => undefined);
  let exited: string | undefined;
  const exit = new Promise<void>((resolve) => {
    child.once('exit', (code, signal) => {
      exited = signal ? `was killed by ${signal}` : `exited with code ${code}`;
      child.stdin?.destroy(); // EOF: the watchdog sees etcd gone and exits
      resolve();
    });
    child.once('error', (err) => {
      exited = `could not be started (${err.message})`;
      resolve();
    });
  });
  const killSync = () => {
    if (exited === undefined && child.pid !== undefined) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // Already gone.
      }
    }
    rmSync(dir, { recursive: true, force: true });
  };
  installExitHook();
  running.add(killSync);
  child.unref();
  for (const stream of [child.stdin, child.stderr]) (stream as unknown as net.Socket | null)?.unref();

  let stopping: Promise<void> | undefined;
  const stop = () =>
    (stopping ??= (async () => {
      try {
        if (exited === undefined) {
          child.kill('SIGTERM');
          const timer = setTimeout(() => child.kill('SIGKILL'), STOP_GRACE_MS);
          await exit;
          clearTimeout(timer);
        }
      } finally {
        running.delete(killSync);
        rmSync(dir, { recursive: true, force: true, maxRetries: 3 });
      }
    })());

  const startTimeoutMs = options.startTimeoutMs ?? 20_000;
  const deadline = Date.now() + startTimeoutMs;
  for (;;) {
    if (exited !== undefined) {
      await stop();
      throw new Error(TestingMessages.etcdExited(exited, logs.trim()));
    }
    if (await health(clientPort!)) break;
    if (Date.now() > deadline) {
      await stop();
      throw new Error(TestingMessages.etcdNotHealthy(clientUrl, startTimeoutMs, 'no healthy answer from /health', logs.trim()));
    }
    await new Promise((resolve) => setTimeout(resolve, 100));
  }
  return { endpoint: `${HOST}:${clientPort}`, clientUrl, pid: child.pid!, stop };
}
