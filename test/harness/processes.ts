// Node child processes for multi-process tests (two app instances competing for a lock, a
// leader that gets SIGKILLed, ...). The child runs a compiled script from build/ and talks
// back with JSON lines on stdout (see child.ts for the child side).
//
//   const worker = spawnNodeScript('test/fixtures/worker.js', { args: [JSON.stringify(config)] }); // see test/support/workers.ts
//   await worker.waitForMessage('acquired');            // msg.type === 'acquired'
//   worker.send({ type: 'release' });
//   await worker.kill('SIGKILL');
//
// Children are tracked: SIGKILLed when the test process exits, and (through lifeline.ts)
// they kill themselves if the test process dies without running any cleanup.
import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import type net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

import { parseJsonObject, type JsonMessage } from './child.js';
import { registerCleanup, signalPid } from './cleanup.js';
import { describeExit, type ExitInfo, LineSplitter, LineTail, withTimeout } from './lines.js';

export type { JsonMessage } from './child.js';
export type { ExitInfo } from './lines.js';

/** build/ (this file is build/test/harness/processes.js once compiled). */
export const BUILD_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..', '..');
const LIFELINE = pathToFileURL(path.join(path.dirname(fileURLToPath(import.meta.url)), 'lifeline.js')).href;
const VERBOSE = process.env.HARNESS_VERBOSE === '1';
const DEFAULT_WAIT_MS = 10_000;
const KILL_GRACE_MS = 5_000;

export interface NodeScriptOptions {
  /** Arguments for the script (process.argv.slice(2) in the child). */
  args?: string[];
  /** Merged over the parent's environment. */
  env?: NodeJS.ProcessEnv;
  cwd?: string;
  /** Extra node flags, e.g. ['--max-old-space-size=128']. */
  nodeArgs?: string[];
  /** Label used in error messages and verbose logs. Default: the script's file name. */
  name?: string;
}

/**
 * What waitForMessage looks for:
 *  - a string: a message whose `type` equals it
 *  - an object: a message having all of these top-level values (compared with ===)
 *  - a function: any predicate
 */
export type MessageMatcher = string | JsonMessage | ((message: JsonMessage) => boolean);

interface Waiter {
  matches: (message: JsonMessage) => boolean;
  resolve: (message: JsonMessage) => void;
  reject: (err: Error) => void;
}

export class NodeProcess {
  /** Every JSON message received so far, in order (consumed or not). */
  readonly messages: JsonMessage[] = [];
  readonly name: string;
  private readonly child: ChildProcess;
  /** Messages not yet returned by waitForMessage. */
  private readonly unconsumed: JsonMessage[] = [];
  private readonly waiters = new Set<Waiter>();
  private readonly output = new LineTail(100);
  private readonly exitPromise: Promise<ExitInfo>;
  private lastExit: ExitInfo | undefined;
  private outputClosed = false;
  private readonly unregister: () => void;

  constructor(script: string, opts: NodeScriptOptions = {}) {
    const file = resolveScript(script);
    this.name = opts.name ?? path.basename(file);
    const env: NodeJS.ProcessEnv = { ...process.env, ...opts.env };
    // Set by node --test for its own per-file processes; a child that imports node:test
    // would otherwise try to report to our runner.
    delete env.NODE_TEST_CONTEXT;
    this.child = spawn(process.execPath, ['--enable-source-maps', `--import=${LIFELINE}`, ...(opts.nodeArgs ?? []), file, ...(opts.args ?? [])], {
      cwd: opts.cwd,
      env,
      stdio: ['pipe', 'pipe', 'pipe', 'ipc'],
    });
    this.exitPromise = new Promise((resolve) => {
      const exited = (info: ExitInfo): void => {
        if (this.lastExit) return;
        this.lastExit = info;
        resolve(info);
      };
      this.child.once('exit', (code, signal) => exited({ code, signal }));
      this.child.once('error', (err) => {
        this.output.push(`[harness] spawn failed: ${err.message}\n`);
        if (this.child.pid === undefined) exited({ code: 127, signal: null });
      });
    });
    this.wireOutput();
    this.unregister = registerCleanup(() => {
      if (this.running) signalPid(this.child.pid, 'SIGKILL');
    });
    void this.exitPromise.then(() => this.unregister());
    // Like the etcd servers: a forgotten child must not keep the test process alive.
    this.child.unref();
    this.child.channel?.unref();
    for (const s of [this.child.stdin, this.child.stdout, this.child.stderr]) (s as unknown as net.Socket | null)?.unref();
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  get running(): boolean {
    return this.child.pid !== undefined && this.lastExit === undefined;
  }

  /**
   * Resolves when the child exits. Reading this property keeps the test process alive until
   * then (the child is otherwise unref'd, and node:test cancels a test whose await could
   * never finish because the event loop emptied).
   */
  get exited(): Promise<ExitInfo> {
    if (this.running) this.child.ref();
    return this.exitPromise;
  }

  /** Recent stdout lines that were not JSON, and stderr: for debugging failures. */
  logs(lines?: number): string {
    return this.output.text(lines);
  }

  /**
   * The first message, received before or after this call, that matches and was not already
   * returned by an earlier waitForMessage. So two waits for 'acquired' return the first and the
   * second 'acquired'. Rejects on timeout or when the child's output ends first.
   */
  waitForMessage(matcher: MessageMatcher, timeoutMs = DEFAULT_WAIT_MS): Promise<JsonMessage> {
    const matches = toPredicate(matcher);
    const index = this.unconsumed.findIndex(matches);
    if (index >= 0) return Promise.resolve(this.unconsumed.splice(index, 1)[0]!);
    if (this.outputClosed) return Promise.reject(this.endedError(matcher));

    let waiter: Waiter | undefined;
    const pending = new Promise<JsonMessage>((resolve, reject) => {
      waiter = { matches, resolve, reject };
      this.waiters.add(waiter);
    });
    return withTimeout(pending, timeoutMs, () => this.describeWait(`timed out after ${timeoutMs} ms`, matcher)).finally(() => {
      if (waiter) this.waiters.delete(waiter);
    });
  }

  /** Writes `message` as one JSON line to the child's stdin (see onMessage in child.ts). */
  send(message: JsonMessage): void {
    if (!this.running) throw new Error(`${this.name} is not running (${describeExit(this.lastExit ?? { code: null, signal: null })})`);
    this.child.stdin?.write(`${JSON.stringify(message)}\n`);
  }

  /** Sends `signal` (default SIGTERM), waits for exit, SIGKILL after 5 s. */
  async kill(signal: NodeJS.Signals = 'SIGTERM'): Promise<ExitInfo> {
    if (!this.running) return this.exitPromise;
    signalPid(this.child.pid, signal);
    try {
      return await withTimeout(this.exitPromise, KILL_GRACE_MS, () => 'grace period over');
    } catch {
      signalPid(this.child.pid, 'SIGKILL');
      return withTimeout(this.exitPromise, KILL_GRACE_MS, () => `${this.name} (pid ${this.child.pid}) survived SIGKILL`);
    }
  }

  private wireOutput(): void {
    const stdout = new LineSplitter();
    this.child.stdout?.on('data', (chunk: Buffer) => stdout.push(chunk).forEach((l) => this.onStdoutLine(l)));
    this.child.stdout?.on('end', () => stdout.flush().forEach((l) => this.onStdoutLine(l)));
    this.child.stderr?.on('data', (chunk: Buffer) => {
      for (const line of this.output.push(chunk)) if (VERBOSE) process.stderr.write(`[${this.name}] ${line}\n`);
    });
    this.child.stdin?.on('error', () => {}); // EPIPE after the child exited: nothing to do
    this.child.once('close', () => {
      this.outputClosed = true;
      for (const w of [...this.waiters]) w.reject(new Error(this.describeWait('output ended before a matching message', undefined)));
    });
  }

  private onStdoutLine(line: string): void {
    const message = parseJsonObject(line);
    if (!message) {
      this.output.push(`${line}\n`);
      if (VERBOSE) process.stderr.write(`[${this.name}] ${line}\n`);
      return;
    }
    this.messages.push(message);
    const waiter = [...this.waiters].find((w) => w.matches(message));
    if (waiter) {
      this.waiters.delete(waiter);
      waiter.resolve(message);
    } else {
      this.unconsumed.push(message);
    }
  }

  private endedError(matcher: MessageMatcher): Error {
    return new Error(this.describeWait('output already ended', matcher));
  }

  private describeWait(problem: string, matcher: MessageMatcher | undefined): string {
    const what = matcher === undefined ? '' : ` for ${typeof matcher === 'function' ? 'a matching message' : JSON.stringify(matcher)}`;
    const state = this.lastExit ? describeExit(this.lastExit) : 'still running';
    const recent = this.messages.slice(-5).map((m) => JSON.stringify(m)).join('\n  ');
    return (
      `${this.name} (pid ${this.child.pid}, ${state}): waiting${what}: ${problem}` +
      `\n  last messages:${recent ? `\n  ${recent}` : ' none'}` +
      `\n  last output:\n${this.logs(20) || '(none)'}`
    );
  }
}

/** Starts `node <build>/<script>`; `script` is relative to build/ (a .ts name is mapped to .js). */
export function spawnNodeScript(script: string, opts: NodeScriptOptions = {}): NodeProcess {
  return new NodeProcess(script, opts);
}

function resolveScript(script: string): string {
  const js = script.replace(/\.ts$/, '.js');
  const file = path.isAbsolute(js) ? js : path.join(BUILD_ROOT, js.replace(/^build\//, ''));
  if (!existsSync(file)) throw new Error(`script not found: ${file} (paths are relative to build/; did the build run?)`);
  return file;
}

function toPredicate(matcher: MessageMatcher): (message: JsonMessage) => boolean {
  if (typeof matcher === 'function') return matcher;
  if (typeof matcher === 'string') return (m) => m.type === matcher;
  const entries = Object.entries(matcher);
  return (m) => entries.every(([k, v]) => m[k] === v);
}
