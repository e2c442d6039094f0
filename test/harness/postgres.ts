// A throwaway PostgreSQL server for tests: initdb into a temp dir, the server on a Unix socket in
// that dir only (no TCP), psql as the client. Always stopped and removed by stop(), and SIGKILLed
// and removed at process exit if a test dies first. As root, the server runs as the `postgres`
// user (it refuses to run as root). Found by scripts/ensure-postgres.sh's rules (PG_BIN, else
// /usr/lib/postgresql/<highest>/bin).
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { chmodSync, chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { registerCleanup, signalPid } from './cleanup.js';
import { sleep } from './lines.js';

export interface PostgresServer {
  /** How to run psql against it from another process: the binary and its connection arguments. */
  readonly psql: { command: string; args: string[] };
  /** Runs SQL through psql (ON_ERROR_STOP, unaligned, tuples only); resolves with its stdout, rejects on failure. */
  sql(statement: string, variables?: Record<string, string>): Promise<string>;
  stop(): Promise<void>;
}

/** The directory with initdb, postgres and psql, or the reason there is none. */
export function findPostgres(): { bin: string } | { missing: string } {
  const fromEnv = process.env.PG_BIN;
  const candidates = fromEnv
    ? [fromEnv]
    : existsSync('/usr/lib/postgresql')
      ? readdirSync('/usr/lib/postgresql').filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)).map((v) => `/usr/lib/postgresql/${v}/bin`)
      : [];
  const bin = candidates.find((dir) => ['initdb', 'postgres', 'psql'].every((tool) => existsSync(path.join(dir, tool))));
  if (!bin) return { missing: `no PostgreSQL server found (${fromEnv ? `PG_BIN=${fromEnv}` : 'looked in /usr/lib/postgresql/*/bin'}); run scripts/ensure-postgres.sh (installs Debian's postgresql as root)` };
  if (process.getuid?.() === 0 && spawnSync('id', ['-u', 'postgres']).status !== 0) return { missing: 'running as root without a postgres user to run the server as' };
  return { bin };
}

/** Runs `command` as the postgres user when we are root (the server refuses root). */
function asServerUser(command: string, args: string[]): [string, string[]] {
  return process.getuid?.() === 0 ? ['runuser', ['-u', 'postgres', '--', command, ...args]] : [command, args];
}

function run(command: string, args: string[], input?: string): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(command, args, { stdio: ['pipe', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(input ?? '');
  });
}

export async function startPostgres(bin: string, startTimeoutMs = 30_000): Promise<PostgresServer> {
  const dir = mkdtempSync(path.join(tmpdir(), 'pg-test-'));
  const data = path.join(dir, 'data');
  const port = '5432'; // only the socket's file name: the socket lives in our own directory
  let server: ChildProcess | undefined;
  const serverPid = (): number | undefined => {
    try {
      return Number(readFileSync(path.join(data, 'postmaster.pid'), 'utf8').split('\n')[0]) || undefined;
    } catch {
      return server?.pid;
    }
  };
  const unregister = registerCleanup(() => {
    signalPid(serverPid(), 'SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  });
  const stop = async () => {
    const pid = serverPid();
    if (server && server.exitCode === null && server.signalCode === null) {
      const exited = new Promise<void>((resolve) => server!.once('close', () => resolve()));
      signalPid(pid, 'SIGINT'); // "fast" shutdown
      const timer = setTimeout(() => signalPid(pid, 'SIGKILL'), 10_000);
      await exited;
      clearTimeout(timer);
    }
    rmSync(dir, { recursive: true, force: true });
    unregister();
  };
  try {
    if (process.getuid?.() === 0) {
      const uid = Number(spawnSync('id', ['-u', 'postgres']).stdout.toString());
      const gid = Number(spawnSync('id', ['-g', 'postgres']).stdout.toString());
      chownSync(dir, uid, gid);
    }
    chmodSync(dir, 0o700);
    const init = await run(...asServerUser(path.join(bin, 'initdb'), ['-D', data, '-U', 'postgres', '--auth=trust', '--no-sync', '-E', 'UTF8']));
    if (init.code !== 0) throw new Error(`initdb failed (${init.code}): ${init.stderr}`);
    const [command, args] = asServerUser(path.join(bin, 'postgres'), ['-D', data, '-k', dir, '-p', port, '-c', 'listen_addresses=', '-c', 'fsync=off']);
    server = spawn(command, args, { stdio: ['ignore', 'ignore', 'pipe'] });
    let logs = '';
    server.stderr!.on('data', (d) => (logs = (logs + d).slice(-4_000)));
    const psqlArgs = ['-h', dir, '-p', port, '-U', 'postgres', '-d', 'postgres', '-X', '-A', '-t', '-q', '-v', 'ON_ERROR_STOP=1'];
    const psql = (statement: string, variables: Record<string, string> = {}) =>
      run(path.join(bin, 'psql'), [...psqlArgs, ...Object.entries(variables).flatMap(([k, v]) => ['-v', `${k}=${v}`])], statement);
    const deadline = Date.now() + startTimeoutMs;
    for (;;) {
      if (server.exitCode !== null) throw new Error(`postgres exited (${server.exitCode}) before it was ready:\n${logs}`);
      if ((await psql('SELECT 1')).code === 0) break;
      if (Date.now() > deadline) throw new Error(`postgres not ready within ${startTimeoutMs} ms:\n${logs}`);
      await sleep(100);
    }
    return {
      psql: { command: path.join(bin, 'psql'), args: psqlArgs },
      async sql(statement, variables) {
        const res = await psql(statement, variables);
        if (res.code !== 0) throw new Error(`psql failed (${res.code}): ${res.stderr.trim()}`);
        return res.stdout.trim();
      },
      stop,
    };
  } catch (err) {
    await stop();
    throw err;
  }
}
