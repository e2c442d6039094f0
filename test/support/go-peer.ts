// The Go side of the interop tests: test/go/etcd-peer (etcd's own Go recipes, built from
// Debian's golang-etcd-server-dev sources) as a child process driven over JSON lines.
//
//   const go = await prepareGoPeer();          // in before(): ensure-go.sh, then a cached build
//   if (!go.binary) t.skip(`Go toolchain not available: ${go.unavailable}`);
//   const peer = startGoPeer(go.binary, { endpoint: etcd().endpoint, id: 'go1' });
//   const { lease } = await peer.waitForMessage('ready');
//   peer.send({ type: 'lock', name: `${ns}job` });      // the prefix without the trailing "/"
//   await peer.waitForMessage('locked');
//   await peer.close();                                 // revokes its lease, waits for exit
//
// The peer exits by itself when its stdin closes, so it cannot outlive the test process.
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

import { parseJsonObject, type JsonMessage } from '../harness/child.js';
import { registerCleanup, signalPid } from '../harness/cleanup.js';
import { describeExit, type ExitInfo, LineSplitter, LineTail, withTimeout } from '../harness/lines.js';
import { BUILD_ROOT } from '../harness/processes.js';

/** The repository root (BUILD_ROOT is build/; the Go sources are not compiled into it). */
export const REPO_ROOT = path.resolve(BUILD_ROOT, '..');
const PEER_SOURCE_DIR = path.join(REPO_ROOT, 'test', 'go', 'etcd-peer');
const GOCODE_ROOT = process.env.GOCODE_ROOT ?? '/usr/share/gocode';

export type GoPeerBuild =
  /** Ready to run. */
  | { binary: string; unavailable?: undefined; buildError?: undefined }
  /** No Go toolchain or no etcd Go sources here (and they could not be installed): skip. */
  | { binary?: undefined; unavailable: string; buildError?: undefined }
  /** The toolchain is there but our program does not build: a real failure. */
  | { binary?: undefined; unavailable?: undefined; buildError: string };

/**
 * Runs scripts/ensure-go.sh, then builds test/go/etcd-peer unless a binary built from the same
 * sources (and the same Go version) is already in .cache/go-bin. Never rejects.
 *
 * A cold build of etcd's client (grpc, protobuf, zap, ...) takes about a minute on a busy
 * 2-core machine, which counts against the test file's timeout; warm, it is instant. To build
 * ahead of the tests: `node build/test/support/go-peer.js`.
 */
export async function prepareGoPeer(): Promise<GoPeerBuild> {
  return buildGoProgram(REPO_ROOT, PEER_SOURCE_DIR, 'etcd-peer');
}

/** What {@link buildGoProgram} gives: a {@link GoPeerBuild}, with the Go version when it built. */
export type GoProgramBuild = GoPeerBuild & { goVersion?: string };

/**
 * Runs `<root>/scripts/ensure-go.sh`, then builds the Go program in `sourceDir` (GOPATH mode)
 * unless a binary of the same sources and Go version is already in `<root>/.cache/go-bin`
 * (named `<name>-<hash>`; older ones are removed). Never rejects. Shared by the Go peer of the
 * tests and the bench's yardstick; `root` is explicit because the bench runs from another build.
 */
export async function buildGoProgram(root: string, sourceDir: string, name: string): Promise<GoProgramBuild> {
  try {
    const ensure = await run('bash', [path.join(root, 'scripts', 'ensure-go.sh')], { cwd: root });
    if (ensure.code !== 0) return { unavailable: lastLine(ensure.stderr) ?? `ensure-go.sh exited with ${ensure.code}` };
    // The script says which go binary and GOPATH it found (go may not be on PATH).
    const use = /^ensure-go: use GO=(\S+) GOPATH=(\S+)/m.exec(ensure.stdout);
    const goBin = use?.[1] ?? process.env.GO ?? 'go';
    const gopath = use?.[2] ?? GOCODE_ROOT;
    const version = await run(goBin, ['version']);
    if (version.code !== 0) return { unavailable: `${goBin} version failed: ${lastLine(version.stderr) ?? version.code}` };
    const goVersion = version.stdout.trim().replace(/^go version /, '');

    const hash = createHash('sha256').update(version.stdout).update(gopath);
    for (const file of readdirSync(sourceDir).filter((f) => f.endsWith('.go')).sort()) {
      hash.update(file).update(readFileSync(path.join(sourceDir, file)));
    }
    const binDir = path.join(root, '.cache', 'go-bin');
    const buildCache = path.join(root, '.cache', 'go-build');
    const binary = path.join(binDir, `${name}-${hash.digest('hex').slice(0, 16)}`);
    if (existsSync(binary)) return { binary, goVersion };

    mkdirSync(binDir, { recursive: true });
    mkdirSync(buildCache, { recursive: true });
    // Build next to the target and rename: a concurrent or interrupted build never leaves a
    // half-written binary under the final name.
    const partial = `${binary}.${process.pid}.tmp`;
    const build = await run(goBin, ['build', '-o', partial, '.'], {
      cwd: sourceDir,
      env: { ...process.env, GO111MODULE: 'off', GOPATH: gopath, GOCACHE: buildCache, GOFLAGS: '' },
    });
    if (build.code !== 0) {
      rmSync(partial, { force: true });
      return { buildError: `go build in ${sourceDir} failed (exit ${build.code}):\n${build.stderr}` };
    }
    renameSync(partial, binary);
    // Binaries of older sources are never used again.
    const stalePattern = new RegExp(`^${name}-[0-9a-f]{16}$`);
    for (const stale of readdirSync(binDir)) {
      if (stalePattern.test(stale) && path.join(binDir, stale) !== binary) rmSync(path.join(binDir, stale), { force: true });
    }
    return { binary, goVersion };
  } catch (err) {
    return { buildError: `preparing ${name} failed: ${(err as Error).stack ?? String(err)}` };
  }
}

interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to completion (asynchronously: the test process's timers keep running). */
function run(cmd: string, args: string[], opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<RunResult> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d: Buffer) => (stdout += d.toString()));
    child.stderr.on('data', (d: Buffer) => (stderr += d.toString()));
    const unregister = registerCleanup(() => {
      signalPid(child.pid, 'SIGKILL');
    });
    child.on('error', (err) => {
      unregister();
      resolve({ code: 127, stdout, stderr: `${stderr}${cmd}: ${err.message}\n` });
    });
    child.on('close', (code, signal) => {
      unregister();
      resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr });
    });
  });
}

function lastLine(text: string | undefined): string | undefined {
  const lines = (text ?? '').trim().split('\n').filter(Boolean);
  return lines.length > 0 ? lines.join(' | ') : undefined;
}

export interface GoPeerOptions {
  endpoint: string;
  /** Name in messages and errors. */
  id: string;
  /** Session TTL in seconds (Go's default is 60; tests use a few). */
  ttl?: number;
}

export type GoMatcher = string | JsonMessage | ((message: JsonMessage) => boolean);

interface Waiter {
  matches: (message: JsonMessage) => boolean;
  resolve: (message: JsonMessage) => void;
  reject: (err: Error) => void;
}

/** A running etcd-peer process. Messages are matched and consumed like NodeProcess's. */
export class GoPeer {
  /** Every message received so far, in order (consumed or not). */
  readonly messages: JsonMessage[] = [];
  readonly name: string;
  private readonly child: ChildProcess;
  private readonly unconsumed: JsonMessage[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly output = new LineTail(100);
  private readonly exitPromise: Promise<ExitInfo>;
  private lastExit: ExitInfo | undefined;
  private outputClosed = false;

  constructor(binary: string, opts: GoPeerOptions) {
    this.name = opts.id;
    this.child = spawn(binary, ['-endpoints', opts.endpoint, '-ttl', String(opts.ttl ?? 5), '-id', opts.id], {
      stdio: ['pipe', 'pipe', 'pipe'],
    });
    this.exitPromise = new Promise((resolve) => {
      const exited = (info: ExitInfo): void => {
        if (this.lastExit) return;
        this.lastExit = info;
        resolve(info);
      };
      this.child.once('exit', (code, signal) => exited({ code, signal }));
      this.child.once('error', (err) => {
        this.output.push(`[go-peer] spawn failed: ${err.message}\n`);
        if (this.child.pid === undefined) exited({ code: 127, signal: null });
      });
    });
    const unregister = registerCleanup(() => {
      if (this.running) signalPid(this.child.pid, 'SIGKILL');
    });
    void this.exitPromise.then(unregister);

    const stdout = new LineSplitter();
    this.child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk).forEach((l) => this.onLine(l)));
    this.child.stdout?.on('end', () => stdout.flush().forEach((l) => this.onLine(l)));
    this.child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of this.output.push(chunk)) if (process.env.HARNESS_VERBOSE === '1') process.stderr.write(`[${this.name}] ${line}\n`);
    });
    this.child.stdin?.on('error', () => {}); // EPIPE after exit
    this.child.once('close', () => {
      this.outputClosed = true;
      for (const w of [...this.waiters]) w.reject(new Error(this.describe('output ended before a matching message')));
    });
  }

  get running(): boolean {
    return this.child.pid !== undefined && this.lastExit === undefined;
  }

  /** Sends one command. */
  send(message: JsonMessage): void {
    if (!this.running) throw new Error(`${this.name} is not running (${describeExit(this.lastExit ?? { code: null, signal: null })})`);
    this.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  /** Whether a matching message has arrived that no waitForMessage returned yet; does not consume it. */
  has(matcher: GoMatcher): boolean {
    return this.unconsumed.some(toPredicate(matcher));
  }

  /**
   * The first not yet consumed message that matches, received before or after this call.
   * An "error" message from the peer, or the peer's exit, fails the wait at once.
   */
  waitForMessage(matcher: GoMatcher, timeoutMs = 10_000): Promise<JsonMessage> {
    const wanted = toPredicate(matcher);
    const errorIndex = this.unconsumed.findIndex((m) => m.type === 'error');
    if (errorIndex >= 0 && !wanted(this.unconsumed[errorIndex]!)) {
      return Promise.reject(new Error(this.describe(`peer reported ${JSON.stringify(this.unconsumed[errorIndex])}`)));
    }
    const index = this.unconsumed.findIndex(wanted);
    if (index >= 0) return Promise.resolve(this.unconsumed.splice(index, 1)[0]!);
    if (this.outputClosed) return Promise.reject(new Error(this.describe(`output already ended; waiting for ${describeMatcher(matcher)}`)));
    let waiter: Waiter | undefined;
    const pending = new Promise<JsonMessage>((resolve, reject) => {
      waiter = { matches: wanted, resolve, reject };
      this.waiters.add(waiter);
    });
    return withTimeout(pending, timeoutMs, () => this.describe(`timed out after ${timeoutMs} ms waiting for ${describeMatcher(matcher)}`)).finally(() => {
      if (waiter) this.waiters.delete(waiter);
    });
  }

  /** Revokes the peer's lease (`close` command) and waits for it to exit; SIGKILL if it hangs. */
  async close(): Promise<ExitInfo> {
    if (!this.running) return this.exitPromise;
    try {
      this.send({ type: 'close' });
      this.child.stdin?.end();
      return await withTimeout(this.exitPromise, 8_000, () => `${this.name} did not exit after close`);
    } catch {
      return this.kill('SIGKILL');
    }
  }

  async kill(signal: NodeJS.Signals = 'SIGKILL'): Promise<ExitInfo> {
    if (!this.running) return this.exitPromise;
    signalPid(this.child.pid, signal);
    return withTimeout(this.exitPromise, 5_000, () => `${this.name} (pid ${this.child.pid}) survived ${signal}`);
  }

  private onLine(line: string): void {
    const message = parseJsonObject(line);
    if (!message) {
      this.output.push(`${line}\n`);
      return;
    }
    this.messages.push(message);
    if (message.type === 'error') {
      // A failed command would otherwise surface only as a timeout: fail every wait now.
      for (const w of [...this.waiters]) {
        if (w.matches(message)) continue;
        this.waiters.delete(w);
        w.reject(new Error(this.describe(`peer reported ${JSON.stringify(message)}`)));
      }
    }
    const waiter = [...this.waiters].find((w) => w.matches(message));
    if (waiter) {
      this.waiters.delete(waiter);
      waiter.resolve(message);
    } else {
      this.unconsumed.push(message);
    }
  }

  private describe(problem: string): string {
    const state = this.lastExit ? describeExit(this.lastExit) : 'still running';
    const recent = this.messages.slice(-6).map((m) => JSON.stringify(m)).join('\n  ');
    return `go peer ${this.name} (pid ${this.child.pid}, ${state}): ${problem}\n  last messages:${recent ? `\n  ${recent}` : ' none'}\n  stderr:\n${this.output.text(20) || '(none)'}`;
  }
}

export function startGoPeer(binary: string, opts: GoPeerOptions): GoPeer {
  return new GoPeer(binary, opts);
}

function toPredicate(matcher: GoMatcher): (message: JsonMessage) => boolean {
  if (typeof matcher === 'function') return matcher;
  if (typeof matcher === 'string') return (m) => m.type === matcher;
  const entries = Object.entries(matcher);
  return (m) => entries.every(([k, v]) => m[k] === v);
}

function describeMatcher(matcher: GoMatcher): string {
  return typeof matcher === 'function' ? 'a matching message' : JSON.stringify(matcher);
}

// `node build/test/support/go-peer.js`: build (or find) the peer ahead of the tests.
if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const result = await prepareGoPeer();
  if (result.binary) console.log(`go-peer: ${result.binary}`);
  else console.error(`go-peer: ${result.unavailable ?? result.buildError}`);
  process.exitCode = result.binary ? 0 : 1;
}
