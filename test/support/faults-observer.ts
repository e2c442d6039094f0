// The outside observer of the fault tests: starts fault workers (test/fixtures/worker.ts), collects what
// they report (JSON lines with timestamps and fencing tokens) and checks the invariants:
//
//  - exclusivity: the hold intervals of one lock never overlap, nor do leaderships. A hold
//    starts when acquire() resolved and ends at the first of: the holder says it stops
//    ('exit', emitted before release), its signal aborts ('lost'), or the test froze or
//    killed the process (it cannot act after that). Because 'lost' ends the interval, a
//    holder that is told too late (after etcd handed the lock on) is an overlap too: this
//    is the "signalled before etcd could hand it on" check.
//  - fencing: no write of a holder or leader was refused by the fenced resource, unless
//    the test made a stale write on purpose.
//  - progress: after a fault, every worker gets the lock again (no waiter stuck) and there
//    is a leader again (re-campaign works).
//  - cleanliness: after shutdown no key is left under the namespace and no lease survives.
import assert from 'node:assert/strict';
import { Etcd3 } from 'etcd3';
import type { JsonMessage, NodeProcess } from '../harness/processes.js';
import { eventually, keysUnder, leaseIds } from './apps.js';
import { spawnWorker, type WorkerConfig } from './workers.js';

/** A fault worker: test/fixtures/worker.ts with the fault and election command modules. */
export type FaultWorkerConfig = Omit<WorkerConfig, 'use'> & Required<Pick<WorkerConfig, 'ttl' | 'election'>>;

export interface Interval {
  worker: string;
  token: bigint;
  start: number;
  end: number;
  endedBy: string;
}

let scenarioCounter = 0;
/** A key prefix for the app (namespace) and one for the fenced resource, unique per scenario. */
export function scenarioPrefixes(label: string): { ns: string; res: string } {
  const base = `f${process.pid}-${++scenarioCounter}-${label}`;
  return { ns: `${base}/app/`, res: `${base}/res/` };
}

export class FaultFleet {
  readonly workers: NodeProcess[] = [];
  /** Times after which a worker could not act any more (SIGKILL) or was frozen (SIGSTOP), by worker name. */
  readonly cutAt = new Map<string, number>();

  constructor(private readonly base: Omit<FaultWorkerConfig, 'identity'>) {}

  start(identity: string, overrides: Partial<FaultWorkerConfig> = {}): NodeProcess {
    const cfg: FaultWorkerConfig = { requestTimeout: 2_000, connectTimeout: 10_000, ...this.base, identity, ...overrides };
    const worker = spawnWorker({ ...cfg, use: cfg.election === false ? ['fault'] : ['fault', 'election'] });
    this.workers.push(worker);
    return worker;
  }

  async startAll(identities: string[], overrides: Partial<FaultWorkerConfig> = {}): Promise<NodeProcess[]> {
    const started = identities.map((id) => this.start(id, overrides));
    await Promise.all(started.map((w) => w.waitForMessage('ready', 30_000)));
    return started;
  }

  byName(name: string): NodeProcess {
    const worker = this.workers.find((w) => w.name === name);
    if (!worker) throw new Error(`no worker ${name}`);
    return worker;
  }

  /** SIGKILL, recording the time: the worker cannot act after it. */
  async kill(worker: NodeProcess): Promise<void> {
    this.cutAt.set(worker.name, Date.now());
    await worker.kill('SIGKILL');
  }

  /** Every message of every worker, tagged with the worker's name. */
  all(): Array<JsonMessage & { worker: string }> {
    return this.workers.flatMap((w) => w.messages.map((m) => ({ ...m, worker: w.name })));
  }

  /** Messages of `type` (optionally matching more fields) at or after `since`. */
  find(type: string, since = 0, match: (m: JsonMessage & { worker: string }) => boolean = () => true) {
    return this.all().filter((m) => m.type === type && Number(m.at ?? 0) >= since && match(m));
  }

  /** Hold intervals of lock `name`, one per 'enter'. */
  lockIntervals(name: string): Interval[] {
    return this.intervals((m) => m.type === 'enter' && m.name === name, (m) => (m.type === 'exit' || m.type === 'lost') && m.name === name);
  }

  /** Leadership intervals of the default election. */
  leaderIntervals(): Interval[] {
    return this.intervals((m) => m.type === 'lead', (m) => m.type === 'unlead');
  }

  private intervals(isStart: (m: JsonMessage) => boolean, isEnd: (m: JsonMessage) => boolean): Interval[] {
    const out: Interval[] = [];
    for (const w of this.workers) {
      const open = new Map<string, Interval>();
      for (const m of w.messages) {
        if (isStart(m)) {
          const interval: Interval = { worker: w.name, token: BigInt(String(m.token)), start: Number(m.at), end: Infinity, endedBy: 'open' };
          open.set(String(m.token), interval);
          out.push(interval);
        } else if (isEnd(m)) {
          const interval = open.get(String(m.token));
          if (interval && interval.end === Infinity) {
            interval.end = Number(m.at);
            interval.endedBy = `${m.type}${m.code ? `:${m.code}` : ''}`;
          }
        }
      }
      const cut = this.cutAt.get(w.name);
      for (const interval of open.values()) {
        if (cut !== undefined && interval.start <= cut && interval.end > cut) {
          interval.end = cut;
          interval.endedBy = `${interval.endedBy}|cut`;
        }
      }
      // A process that exited cannot act any more: its open intervals end at its last message.
      if (!w.running) {
        const last = Math.max(...w.messages.map((m) => Number(m.at ?? 0)));
        for (const interval of open.values()) if (interval.end === Infinity) interval.end = last;
      }
    }
    return out.sort((a, b) => a.start - b.start);
  }

  /** Asserts that no two intervals overlap and tokens grow with time; returns them. */
  assertExclusive(intervals: Interval[], label: string): Interval[] {
    const describe = (i: Interval) => `${i.worker}#${i.token} [${i.start}, ${i.end}] (${i.endedBy})`;
    const problems: string[] = [];
    for (let i = 0; i < intervals.length; i++) {
      for (let j = i + 1; j < intervals.length; j++) {
        const a = intervals[i]!;
        const b = intervals[j]!;
        if (a.start < b.end && b.start < a.end) problems.push(`overlap: ${describe(a)} and ${describe(b)}`);
      }
      if (i > 0 && intervals[i]!.token <= intervals[i - 1]!.token) {
        problems.push(`token not increasing: ${describe(intervals[i - 1]!)} then ${describe(intervals[i]!)}`);
      }
    }
    assert.deepEqual(problems, [], `${label}: ${problems.length} exclusivity violation(s)`);
    return intervals;
  }

  /** Asserts that the fenced resource refused no write (outside `exceptWorkers`). */
  assertNoRefusedWrites(exceptWorkers: string[] = []): void {
    const refused = this.find('write', 0, (m) => m.refused === true && !exceptWorkers.includes(m.worker));
    assert.deepEqual(refused, [], 'a holder or leader wrote with a stale fencing token');
  }

  /** Waits until every worker in `who` entered lock `name` at least once after `since`; returns the first such time per worker. */
  async waitForEnters(who: NodeProcess[], name: string, since: number, timeoutMs: number): Promise<Map<string, number>> {
    await eventually(
      () => who.every((w) => w.messages.some((m) => m.type === 'enter' && m.name === name && Number(m.at) >= since)),
      timeoutMs,
      `every worker of ${who.map((w) => w.name).join(', ')} holds "${name}" again after ${new Date(since).toISOString()}; ` +
        `entered: ${who.map((w) => `${w.name}=${w.messages.filter((m) => m.type === 'enter' && Number(m.at) >= since).length}`).join(' ')}`,
    );
    const firsts = new Map<string, number>();
    for (const w of who) {
      firsts.set(w.name, Number(w.messages.find((m) => m.type === 'enter' && m.name === name && Number(m.at) >= since)!.at));
    }
    return firsts;
  }

  /** Waits for a 'lead' after `since` by any worker; returns it. */
  async waitForLeader(since: number, timeoutMs: number, among: NodeProcess[] = this.workers): Promise<JsonMessage & { worker: string }> {
    let found: (JsonMessage & { worker: string }) | undefined;
    await eventually(() => {
      found = this.find('lead', since, (m) => among.some((w) => w.name === m.worker))[0];
      return found !== undefined;
    }, timeoutMs, `a leader after ${new Date(since).toISOString()}`);
    return found!;
  }

  /** The worker currently leading (a 'lead' without a later 'unlead'), if any. */
  currentLeader(): NodeProcess | undefined {
    return this.workers.find((w) => {
      if (!w.running || this.cutAt.has(w.name)) return false;
      const leads = w.messages.filter((m) => m.type === 'lead');
      const last = leads.at(-1);
      return last !== undefined && !w.messages.some((m) => m.type === 'unlead' && m.token === last.token);
    });
  }

  /** The worker currently holding `name`, if any (an 'enter' without a later exit/lost). */
  currentHolder(name: string): NodeProcess | undefined {
    return this.workers.find((w) => {
      if (!w.running || this.cutAt.has(w.name)) return false;
      const enters = w.messages.filter((m) => m.type === 'enter' && m.name === name);
      const last = enters.at(-1);
      return last !== undefined && !w.messages.some((m) => (m.type === 'exit' || m.type === 'lost') && m.token === last.token);
    });
  }

  /** Stops the loops and closes the apps of every live worker; waits for their processes to exit. */
  async closeAll(timeoutMs = 20_000): Promise<void> {
    const live = this.workers.filter((w) => w.running);
    for (const w of live) w.send({ type: 'close' });
    await Promise.all(
      live.map(async (w) => {
        await w.waitForMessage('closed', timeoutMs).catch((err: Error) => {
          const recent = w.messages.slice(-40).map((m) => JSON.stringify(m)).join('\n  ');
          throw new Error(`${err.message}\n  last 40 messages:\n  ${recent}`);
        });
        const exited = await Promise.race([w.exited, new Promise((r) => setTimeout(r, 5_000, 'running'))]);
        if (exited === 'running') await w.kill('SIGKILL');
      }),
    );
  }

  async killAll(): Promise<void> {
    await Promise.all(this.workers.map((w) => w.kill('SIGKILL').catch(() => undefined)));
  }

  /** Warnings and errors the workers logged (through Nest's logger). */
  logs(): string[] {
    return this.find('log').map((m) => `${m.worker}: ${String(m.message)}`);
  }
}

/** Initialises the fence key of resource `name` (must exist for the value comparison). */
export async function initFence(client: Etcd3, resPrefix: string, names: string[]): Promise<void> {
  for (const name of names) await client.put(`${resPrefix}${name}/fence`).value('0'.repeat(20));
}

/** Leases etcd has right now, as a set of decimal ids. */
export async function leaseSet(client: Etcd3): Promise<Set<string>> {
  return new Set(await leaseIds(client));
}

/**
 * After shutdown: no key under `ns`, and no lease that was not there before (leases of
 * killed workers expire by TTL, so this polls for up to `timeoutMs`).
 */
export async function assertNoStrays(client: Etcd3, ns: string, leasesBefore: Set<string>, timeoutMs: number): Promise<void> {
  let keys: string[] = [];
  let leases: string[] = [];
  try {
    await eventually(async () => {
      keys = await keysUnder(client, ns);
      leases = (await leaseIds(client)).filter((id) => !leasesBefore.has(id));
      return keys.length === 0 && leases.length === 0;
    }, timeoutMs, 'no stray keys or leases');
  } catch {
    assert.deepEqual({ keys, leases }, { keys: [], leases: [] }, `stray keys or leases ${timeoutMs} ms after shutdown`);
  }
}

/** Summary numbers for diagnostics: holds per worker, losses, refused writes. */
export function summary(fleet: FaultFleet, lock: string): string {
  const holds = fleet.lockIntervals(lock);
  const per = new Map<string, number>();
  for (const h of holds) per.set(h.worker, (per.get(h.worker) ?? 0) + 1);
  const lost = fleet.find('lost').filter((m) => m.code === 'SESSION_LOST').length;
  const leads = fleet.leaderIntervals().length;
  return `holds ${holds.length} (${[...per].map(([w, n]) => `${w}=${n}`).join(' ')}), session-lost holds ${lost}, leaderships ${leads}`;
}
