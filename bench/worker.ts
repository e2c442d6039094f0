// Benchmark child process: one "app instance" (its own Nest application, etcd
// client and session), driven by bench/run.ts over JSON lines.
//   node worker.js elect <endpoint> <identity> <namespace> <sessionTtl>
//   node worker.js scale <endpoint> <ours|etcd3> <count>
//   node worker.js chain <endpoint>
//   node worker.js leaderonly <endpoint>
// Every timestamp is process.hrtime (CLOCK_MONOTONIC, comparable across processes), as a decimal string.
import 'reflect-metadata';
import { Injectable } from '@nestjs/common';
import { Etcd3, type Lock } from 'etcd3';
import { ElectionService, LeaderOnly, LockService, type LockHandle } from '../lib/index.js';
import { EtcdOps } from '../lib/etcd/etcd-ops.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { emit, onMessage, type JsonMessage } from '../test/harness/child.js';
import { createBenchApp, memorySnapshot, nowNs, sleep } from './common.js';
import { median, round } from './stats.js';

const [role, endpoint, ...rest] = process.argv.slice(2);
if (!role || !endpoint) throw new Error('usage: worker.js <role> <endpoint> ...');

const warnings: string[] = [];
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

/** Runs `handler` for each message, one at a time, reporting failures instead of dying silently. */
function serve(handler: (message: JsonMessage) => Promise<void>): void {
  let chain = Promise.resolve();
  onMessage((message) => {
    chain = chain.then(() => handler(message)).catch((err: unknown) => {
      emit({ type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) });
    });
  });
}

// -------------------------------------------------------------------- elect

/**
 * Observation only: stamps the library's resign delete and its campaign checks
 * (wrapping EtcdOps methods) so the runner can break a failover down into steps.
 */
function markElectionSteps(): void {
  const proto = EtcdOps.prototype as unknown as Record<string, (...args: unknown[]) => Promise<unknown>>;
  const wrap = (method: string, whatIndex: number, prefix: string, mark: string) => {
    const original = proto[method]!;
    proto[method] = async function marked(this: unknown, ...args: unknown[]) {
      const start = nowNs();
      const result = await original.apply(this, args);
      if (String(args[whatIndex]).startsWith(prefix)) emit({ type: 'mark', what: mark, start: start.toString(), end: nowNs().toString() });
      return result;
    };
  };
  // In an elect worker the only guarded deletes are the resign and the only checks the campaign's.
  wrap('deleteIfRevision', 2, '', 'resign');
  wrap('checkOlder', 4, '', 'check');
  // The new leader's side: when each DELETE reaches this process (its first one after a leader
  // leaves is the one that hands it the turn, or wakes its observer).
  type Follow = (target: unknown, signal: unknown, listener: (event: { type: string }) => unknown) => Promise<unknown>;
  const watches = EtcdWatches.prototype as unknown as { follow: Follow };
  const follow = watches.follow;
  watches.follow = function marked(this: unknown, target: unknown, signal: unknown, listener: (event: { type: string }) => unknown) {
    return follow.call(this, target, signal, (event: { type: string }) => {
      if (event.type === 'delete') emit({ type: 'mark', what: 'delete-event', t: nowNs().toString() });
      return listener(event);
    });
  };
}

async function elect(identity: string, namespace: string, ttl: number): Promise<void> {
  markElectionSteps();
  const app = await createBenchApp({ hosts: endpoint!, identity, namespace, sessionTtl: ttl });
  const elections = app.get(ElectionService);
  elections.leader$.subscribe((state) => {
    emit({ type: 'state', isLeader: state.isLeader, leader: state.leader?.value ?? null, t: nowNs().toString() });
  });
  emit({ type: 'ready', pid: process.pid });
  serve(async (message) => {
    if (message.type !== 'close') return;
    // Graceful shutdown as an app does it: app.close() runs the module's hooks (resign, revoke).
    emit({ type: 'closing', t: nowNs().toString() });
    await app.close();
    emit({ type: 'closed', t: nowNs().toString(), warnings });
    process.exit(0);
  });
}

// -------------------------------------------------------------------- chain

/**
 * The physical bound of a graceful failover without any library: on the DELETE of `key`
 * (the resigning leader's key, deleted by the runner), read the election prefix once
 * (the next leader's check) and report when that read returned.
 */
async function chain(): Promise<void> {
  const client = new Etcd3({ hosts: endpoint! });
  await client.get('warm-up').string();
  emit({ type: 'ready', pid: process.pid });
  serve(async (message) => {
    if (message.type === 'stop') {
      client.close();
      process.exit(0);
    }
    if (message.type !== 'arm') return;
    const key = String(message.key);
    const watcher = await client.watch().key(key).only('delete').create();
    watcher.on('delete', () => {
      void client
        .getAll()
        .prefix(String(message.prefix))
        .sort('Create', 'Ascend')
        .limit(1)
        .keys()
        .then(() => {
          emit({ type: 'chained', t: nowNs().toString() });
          void watcher.cancel();
        });
    });
    emit({ type: 'armed' });
  });
}

// -------------------------------------------------------------------- scale

let acquiredSoFar = 0;
/** Holds whose signal has aborted (lost: session ended, key deleted) among those acquired. */
let lostCount: () => number = () => 0;

async function scale(impl: string, count: number): Promise<void> {
  const names = Array.from({ length: count }, (_, i) => `res-${i}`);
  let acquireAll: () => Promise<void>;
  let releaseAll: () => Promise<void>;
  let close: () => Promise<void>;
  if (impl === 'ours') {
    const app = await createBenchApp({ hosts: endpoint!, identity: 'scale', namespace: 'scale-ours/', election: false });
    const locks = app.get(LockService);
    let handles: LockHandle[] = [];
    acquireAll = async () => {
      handles = await Promise.all(names.map((n) => locks.acquire(n).then((h) => (acquiredSoFar++, h))));
    };
    lostCount = () => handles.filter((h) => h.signal.aborted).length;
    releaseAll = async () => {
      await Promise.all(handles.map((h) => h.release()));
      handles = [];
    };
    close = () => app.close();
  } else {
    const client = new Etcd3({ hosts: endpoint! });
    await client.get('warm-up').string();
    let held: Lock[] = [];
    acquireAll = async () => {
      held = await Promise.all(names.map((n) => client.lock(`scale-etcd3/${n}`).acquire().then((l) => (acquiredSoFar++, l))));
    };
    releaseAll = async () => {
      await Promise.all(held.map((l) => l.release()));
      held = [];
    };
    close = async () => client.close();
  }
  emit({ type: 'ready', pid: process.pid, memory: memorySnapshot() });
  serve(async (message) => {
    const started = nowNs();
    if (message.type === 'acquire') {
      // Progress once a second: the runner reports how far a capped run got.
      const progress = setInterval(() => emit({ type: 'progress', acquired: acquiredSoFar, ms: Number(nowNs() - started) / 1e6 }), 1_000);
      await acquireAll().finally(() => clearInterval(progress));
      const ms = Number(nowNs() - started) / 1e6;
      emit({ type: 'held', ms, memory: memorySnapshot(), lost: lostCount() });
    } else if (message.type === 'lost') {
      emit({ type: 'lost', lost: lostCount() });
    } else if (message.type === 'release') {
      await releaseAll();
      emit({ type: 'released', ms: Number(nowNs() - started) / 1e6 });
    } else if (message.type === 'stop') {
      await close();
      emit({ type: 'stopped', warnings });
      process.exit(0);
    }
  });
}

// --------------------------------------------------------------- leaderonly

@Injectable()
class Ticker {
  total = 0;

  plain(n: number): number {
    this.total += n;
    return this.total;
  }

  @LeaderOnly()
  guarded(n: number): number {
    this.total += n;
    return this.total;
  }

  /** An election this instance never campaigns for: the "not leader, skip" path. */
  @LeaderOnly('bench-not-campaigned')
  skipped(n: number): number {
    this.total += n;
    return this.total;
  }

  async plainAsync(n: number): Promise<number> {
    this.total += n;
    return this.total;
  }

  @LeaderOnly()
  async guardedAsync(n: number): Promise<number> {
    this.total += n;
    return this.total;
  }
}

let sink = 0;
// One loop per method keeps every call site monomorphic.
const loops = {
  plain: (t: Ticker, n: number) => { for (let i = 0; i < n; i++) sink ^= t.plain(i) | 0; },
  guarded: (t: Ticker, n: number) => { for (let i = 0; i < n; i++) sink ^= t.guarded(i) | 0; },
  skipped: (t: Ticker, n: number) => { for (let i = 0; i < n; i++) sink ^= (t.skipped(i) ?? 0) | 0; },
  plainAsync: async (t: Ticker, n: number) => { for (let i = 0; i < n; i++) sink ^= (await t.plainAsync(i)) | 0; },
  guardedAsync: async (t: Ticker, n: number) => { for (let i = 0; i < n; i++) sink ^= ((await t.guardedAsync(i)) ?? 0) | 0; },
};
type LoopName = keyof typeof loops;

async function nsPerCall(name: LoopName, ticker: Ticker, n: number): Promise<number> {
  const started = nowNs();
  await loops[name](ticker, n);
  return Number(nowNs() - started) / n;
}

async function leaderOnly(syncIterations: number, asyncIterations: number, reps: number): Promise<void> {
  const app = await createBenchApp({ hosts: endpoint!, identity: 'leader-only-bench', namespace: 'leader-only/', sessionTtl: 10 }, [Ticker]);
  const elections = app.get(ElectionService);
  const ticker = app.get(Ticker);
  const until = Date.now() + 15_000;
  while (!elections.isLeader()) {
    if (Date.now() > until) throw new Error('never became leader of the default election');
    await sleep(20);
  }
  // Before any decorated call: no AsyncLocalStorage.run has happened in this process yet.
  for (let i = 0; i < 5; i++) await loops.plainAsync(ticker, asyncIterations); // JIT warm-up
  const asyncBeforeAls: number[] = [];
  for (let r = 0; r < reps; r++) asyncBeforeAls.push(await nsPerCall('plainAsync', ticker, asyncIterations));

  const names: LoopName[] = ['plain', 'guarded', 'skipped', 'plainAsync', 'guardedAsync'];
  const iterations = (name: LoopName) => (name.endsWith('Async') ? asyncIterations : syncIterations);
  for (const name of names) await loops[name](ticker, iterations(name)); // JIT warm-up
  const samples: Record<LoopName, number[]> = { plain: [], guarded: [], skipped: [], plainAsync: [], guardedAsync: [] };
  for (let r = 0; r < reps; r++) {
    // Rotate the order so drift (other load on the machine) spreads over all variants.
    for (let k = 0; k < names.length; k++) {
      const name = names[(r + k) % names.length]!;
      samples[name].push(await nsPerCall(name, ticker, iterations(name)));
    }
  }
  const result: Record<string, unknown> = {
    syncIterations,
    asyncIterations,
    reps,
    nsPerCall: Object.fromEntries(names.map((n) => [n, round(median(samples[n]), 1)])),
    samples: Object.fromEntries(names.map((n) => [n, samples[n].map((v) => round(v, 1))])),
    plainAsyncBeforeAnyAlsRun: round(median(asyncBeforeAls), 1),
    sink,
  };
  await app.close();
  emit({ type: 'result', ...result, warnings });
  process.exit(0);
}

// --------------------------------------------------------------------- main

switch (role) {
  case 'elect':
    await elect(rest[0]!, rest[1]!, Number(rest[2]));
    break;
  case 'chain':
    await chain();
    break;
  case 'scale':
    await scale(rest[0]!, Number(rest[1]));
    break;
  case 'leaderonly':
    await leaderOnly(Number(rest[0] ?? 200_000), Number(rest[1] ?? 50_000), Number(rest[2] ?? 7));
    break;
  default:
    throw new Error(`unknown role ${role}`);
}
