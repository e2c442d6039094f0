// The soak (`npm run soak`, and a 60 s seeded run in test/soak.test.ts): a throwaway etcd
// (single node, or a 3-member cluster), W worker processes (test/fixtures/worker.ts with the
// `soak` commands) each connected through its own fault proxy, a seeded nemesis during the
// fault phase, a quiet phase, then the outside observer's verdict (invariants.ts).
//
// Phases: setup (etcd, proxies, workers; every worker holds the mutex once) -> faults (the
// nemesis, one fault at a time, each healed before the next; none runs past the end of the
// phase) -> quiet (no fault: every worker must make progress; then the leader resigns until
// every worker has led once) -> stop (loops stop, the counter is read, apps close) -> check
// (no key but the counter, no lease; then the invariants).
import { Etcd3 } from 'etcd3';
import { signalPid } from '../harness/cleanup.js';
import { startEtcd, startEtcdCluster, type EtcdCluster, type EtcdServer } from '../harness/etcd.js';
import type { JsonMessage, NodeProcess } from '../harness/processes.js';
import { startProxy, type TcpProxy } from '../harness/proxy.js';
import type { SoakStart } from '../fixtures/commands/soak.js';
import { spawnWorker } from '../support/workers.js';
import { checkInvariants, type InvariantResult, type ProcessRecord } from './invariants.js';
import { faultKinds, planFault, prng, type FaultKind, type FaultPlan } from './nemesis.js';

export interface SoakOptions {
  /** Length of the fault phase plus the quiet phase (setup and shutdown come on top). */
  durationMs: number;
  cluster?: boolean;
  /** Seeds the nemesis and the workers' pauses. Default: random (reported in the result). */
  seed?: number;
  workers?: number;
  /** Session TTL (s). Default 3. */
  ttlSeconds?: number;
  /** Semaphore permits. Default 2. */
  permits?: number;
  /** Quiet phase (ms). Default: a quarter of durationMs, at least 20 s, at most 60 s. */
  quietMs?: number;
  log?: (line: string) => void;
}

export interface FaultRecord extends FaultPlan {
  seq: number;
  /** What it hit: a worker process, or etcd member(s). */
  target: string;
  /** Seconds since the fault phase began. */
  at: number;
  startAt: number;
  healedAt: number;
  note?: string;
}

export interface SoakResult {
  ok: boolean;
  seed: number;
  options: { minutes: number; cluster: boolean; workers: number; ttlSeconds: number; permits: number; quietSeconds: number };
  startedAt: string;
  etcd: string;
  phases: { setupSeconds: number; faultSeconds: number; quietSeconds: number; shutdownSeconds: number; totalSeconds: number };
  faults: FaultRecord[];
  faultCounts: Record<string, number>;
  operations: Record<string, number | string>;
  perWorker: Array<Record<string, number | string>>;
  invariants: InvariantResult[];
  /** Warnings and errors the workers logged, counted by message (first 80 characters). */
  logs: Record<string, number>;
  error?: string;
  /** The keys under the namespace at the end of the quiet phase, with the process whose lease owns each (diagnostics). */
  keysAtQuietEnd?: Array<{ key: string; createRevision: string; lease: string; owner: string }>;
  /** Every message of every worker process (not part of the JSON result; the CLI writes it as JSON lines). */
  events?: Array<Record<string, unknown>>;
}

const MUTEX = 'counter-lock';
const SEMAPHORE = 'pool';
const READY_TIMEOUT_MS = 45_000;
/** A closed app must let its process exit (nothing left that keeps Node's event loop alive). */
const EXIT_AFTER_CLOSE_MS = 10_000;
const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, Math.max(0, ms)));

interface Slot {
  index: number;
  proxies: TcpProxy[];
  current: NodeProcess;
  record: ProcessRecord;
  incarnations: number;
}

export async function runSoak(options: SoakOptions): Promise<SoakResult> {
  const cluster = options.cluster === true;
  const seed = (options.seed ?? Math.floor(Math.random() * 2 ** 31)) >>> 0;
  const workers = options.workers ?? 4;
  const ttlSeconds = options.ttlSeconds ?? 3;
  const ttlMs = ttlSeconds * 1000;
  const permits = options.permits ?? 2;
  const quietMs = options.quietMs ?? Math.min(60_000, Math.max(20_000, Math.round(options.durationMs / 4)));
  const faultMs = Math.max(0, options.durationMs - quietMs);
  const log = options.log ?? (() => undefined);
  if (!Number.isInteger(workers) || workers < 2) throw new RangeError(`workers must be an integer >= 2, got ${workers}`);

  const t0 = Date.now();
  const ns = `soak-${seed}/`;
  const counterKey = `${ns}counter`;
  const records: ProcessRecord[] = [];
  const processes = new Map<string, NodeProcess>();
  const faults: FaultRecord[] = [];
  const slots: Slot[] = [];
  const closing = new Set<string>();
  /** Problems while stopping a worker (it did not answer), reported by the 'workers' invariant. */
  const problemsOf = (name: string) => {
    const record = records.find((r) => r.name === name)!;
    return (record.stopProblems ??= []);
  };
  let single: EtcdServer | undefined;
  let etcdCluster: EtcdCluster | undefined;
  let raw: Etcd3 | undefined;
  const result: SoakResult = {
    ok: false,
    seed,
    options: { minutes: options.durationMs / 60_000, cluster, workers, ttlSeconds, permits, quietSeconds: quietMs / 1000 },
    startedAt: new Date(t0).toISOString(),
    etcd: cluster ? '3-member cluster' : 'single node',
    phases: { setupSeconds: 0, faultSeconds: 0, quietSeconds: 0, shutdownSeconds: 0, totalSeconds: 0 },
    faults,
    faultCounts: Object.fromEntries(faultKinds(cluster).map((k) => [k, 0])),
    operations: {},
    perWorker: [],
    invariants: [],
    logs: {},
  };
  const secs = (from: number, to = Date.now()) => Math.round((to - from) / 100) / 10;

  try {
    // ------------------------------------------------------------------ setup
    if (cluster) etcdCluster = await startEtcdCluster(3, { name: 'soak' });
    else single = await startEtcd({ name: 'soak' });
    const endpoints = cluster ? etcdCluster!.endpoints : [single!.endpoint];
    log(`etcd ${result.etcd} at ${endpoints.join(', ')}; seed ${seed}; ${workers} workers; TTL ${ttlSeconds} s; faults ${faultMs / 1000} s, quiet ${quietMs / 1000} s`);
    raw = new Etcd3({ hosts: endpoints });
    await raw.put(counterKey).value('0');

    const spawn = (slot: Slot | { index: number; proxies: TcpProxy[]; incarnations: number }): { proc: NodeProcess; record: ProcessRecord } => {
      const name = `w${slot.index}.${slot.incarnations++}`;
      const proc = spawnWorker({
        use: ['soak'],
        hosts: slot.proxies.map((p) => p.endpoint),
        namespace: ns,
        identity: name,
        ttl: ttlSeconds,
        election: 'leader',
        requestTimeout: 2_000,
        connectTimeout: 10_000,
        resource: { hosts: endpoints, prefix: ns },
      });
      const record: ProcessRecord = { name, slot: slot.index, messages: proc.messages, freezes: [] };
      records.push(record);
      processes.set(name, proc);
      void proc.exited.then((info) => {
        if (record.killedAt === undefined && record.unexpectedExit === undefined && !(closing.has(name) && info.code === 0)) {
          record.unexpectedExit = `exit code ${info.code}${info.signal ? `, signal ${info.signal}` : ''}; stderr and other output:\n${proc.logs(40).trim()}`;
        }
      });
      return { proc, record };
    };
    const start = async (proc: NodeProcess, slotIndex: number, incarnation: number) => {
      await proc.waitForMessage('ready', READY_TIMEOUT_MS);
      const cmd: SoakStart = {
        mutex: MUTEX,
        semaphore: SEMAPHORE,
        permits,
        counterKey,
        seed: (seed ^ Math.imul(slotIndex + 1, 0x9e3779b1) ^ Math.imul(incarnation + 1, 0x85ebca6b)) >>> 0,
        counterGapMs: [5, 40],
        counterThinkMs: [0, 4],
        semHoldMs: [50, 400],
        semGapMs: [20, 200],
        leaderTickMs: 200,
      };
      proc.send({ type: 'soak-start', ...cmd });
      await proc.waitForMessage('soak-started', 10_000);
    };

    for (let i = 0; i < workers; i++) {
      const proxies = await Promise.all(endpoints.map((e) => startProxy(e)));
      const pending = { index: i, proxies, incarnations: 0 };
      const { proc, record } = spawn(pending);
      slots.push({ ...pending, current: proc, record, incarnations: pending.incarnations });
    }
    await Promise.all(slots.map((s) => start(s.current, s.index, 0)));
    // Every worker in the game before the first fault.
    const warm = Date.now();
    while (!slots.every((s) => s.current.messages.some((m) => m.type === 'inc-ack'))) {
      if (Date.now() - warm > 30_000) throw new Error('setup: not every worker incremented the counter within 30 s');
      await sleep(50);
    }
    const faultStart = Date.now();
    result.phases.setupSeconds = secs(t0, faultStart);
    log(`setup done in ${result.phases.setupSeconds} s; fault phase begins`);

    // ----------------------------------------------------------------- faults
    const faultEnd = faultStart + faultMs;
    const random = prng(seed);
    const workerFault = (k: FaultKind) => ['kill-worker', 'pause-worker', 'long-pause-worker', 'blackhole', 'delay', 'reset'].includes(k);
    // Time a fault needs on top of its duration to be healed (a worker restarts, etcd comes back).
    const allowance = (k: FaultKind) => (k === 'kill-worker' ? 10_000 : workerFault(k) ? 500 : 6_000);
    let skipped = 0;
    for (let seq = 1; Date.now() < faultEnd; ) {
      const plan = planFault(random, { cluster, workers, ttlMs });
      if (Date.now() + plan.durationMs + allowance(plan.kind) > faultEnd) {
        // Does not fit before the end of the phase: skip it (at most a few, then stop).
        if (++skipped > 5) break;
        continue;
      }
      const slot = slots[plan.slot ?? 0]!;
      const startAt = Date.now();
      const fault: FaultRecord = { ...plan, seq: seq++, target: '', at: secs(faultStart, startAt), startAt, healedAt: startAt };
      if (!workerFault(plan.kind)) delete fault.slot;
      faults.push(fault);
      result.faultCounts[plan.kind] = (result.faultCounts[plan.kind] ?? 0) + 1;
      switch (plan.kind) {
        case 'kill-worker': {
          fault.target = slot.record.name;
          if (!slot.current.running) fault.note = 'had already exited; ';
          signalPid(slot.current.pid, 'SIGKILL');
          slot.record.killedAt = Date.now();
          await slot.current.kill('SIGKILL');
          await sleep(plan.durationMs);
          const { proc, record } = spawn(slot);
          slot.current = proc;
          slot.record = record;
          await start(proc, slot.index, slot.incarnations - 1);
          fault.note = `${fault.note ?? ''}restarted as ${record.name}`;
          break;
        }
        case 'pause-worker':
        case 'long-pause-worker': {
          fault.target = slot.record.name;
          if (!slot.current.running) fault.note = 'had already exited';
          signalPid(slot.current.pid, 'SIGSTOP');
          const freeze = { start: Date.now(), end: Infinity };
          slot.record.freezes.push(freeze);
          await sleep(plan.durationMs);
          freeze.end = Date.now();
          signalPid(slot.current.pid, 'SIGCONT');
          break;
        }
        case 'blackhole':
        case 'reset':
        case 'delay': {
          fault.target = `link of ${slot.record.name}`;
          for (const p of slot.proxies) {
            if (plan.kind === 'delay') p.delay(plan.delayMs!);
            else if (plan.kind === 'reset') p.reset();
            else p.blackhole();
          }
          await sleep(plan.durationMs);
          for (const p of slot.proxies) p.pass();
          break;
        }
        case 'etcd-restart':
          fault.target = 'etcd';
          await single!.restart();
          break;
        case 'etcd-crash':
          fault.target = 'etcd';
          await single!.kill('SIGKILL');
          await sleep(plan.durationMs);
          await single!.restart();
          break;
        case 'etcd-pause':
          fault.target = 'etcd';
          single!.pause();
          await sleep(plan.durationMs);
          single!.resume();
          break;
        case 'kill-leader':
        case 'kill-follower':
        case 'lose-quorum':
        case 'pause-leader': {
          const c = etcdCluster!;
          const leader = await c.leader({ timeoutMs: 15_000 });
          const follower = (leader.index + 1 + ((plan.slot ?? 0) % 2)) % 3;
          const victims = plan.kind === 'kill-leader' || plan.kind === 'pause-leader' ? [leader.index] : plan.kind === 'kill-follower' ? [follower] : [leader.index, follower];
          fault.target = victims.map((i) => `${c.member(i).name}${i === leader.index ? ' (raft leader)' : ''}`).join(' + ');
          if (plan.kind === 'pause-leader') {
            c.member(leader.index).pause();
            await sleep(plan.durationMs);
            c.member(leader.index).resume();
          } else {
            await Promise.all(victims.map((i) => c.member(i).kill('SIGKILL')));
            await sleep(plan.durationMs);
            await Promise.all(victims.map((i) => c.member(i).restart()));
          }
          await c.leader({ timeoutMs: 15_000 });
          break;
        }
      }
      fault.healedAt = Date.now();
      log(`fault #${fault.seq} at ${fault.at} s: ${plan.kind} ${fault.target}${plan.delayMs ? ` ${plan.delayMs} ms/chunk` : ''} for ${plan.durationMs} ms${fault.note ? ` (${fault.note})` : ''}`);
      await sleep(Math.min(plan.gapMs, faultEnd - Date.now()));
    }
    const quietStart = Date.now();
    result.phases.faultSeconds = secs(faultStart, quietStart);
    log(`${faults.length} faults in ${result.phases.faultSeconds} s; quiet phase (${quietMs / 1000} s)`);

    // ------------------------------------------------------------------ quiet
    await sleep(quietMs);
    // Leadership progress: the leader resigns (and queues again) until every worker has led.
    // A worker that crashed stays dead (the 'workers' invariant reports it); the others go on.
    const finals = () => slots.map((s) => s.current).filter((p) => p.running);
    const ledSinceQuiet = (p: NodeProcess) => p.messages.some((m) => m.type === 'lead' && Number(m.at) >= quietStart);
    for (let round = 0; round < 3 * workers && !finals().every(ledSinceQuiet); round++) {
      const leader = finals().find((p) => {
        const leads = p.messages.filter((m) => m.type === 'lead');
        const last = leads.at(-1);
        return last !== undefined && !p.messages.some((m) => (m.type === 'lost' || m.type === 'exit') && m.kind === 'leader' && m.token === last.token);
      });
      if (!leader) {
        await sleep(500);
        continue;
      }
      const leadsBefore = finals().reduce((n, p) => n + p.messages.filter((m) => m.type === 'lead').length, 0);
      if (!leader.running) continue;
      leader.send({ type: 'soak-resign' });
      const asked = Date.now();
      while (Date.now() - asked < 10_000 && finals().reduce((n, p) => n + p.messages.filter((m) => m.type === 'lead').length, 0) === leadsBefore) await sleep(20);
    }
    const stopAt = Date.now();
    result.phases.quietSeconds = secs(quietStart, stopAt);
    const owners = new Map<string, string>();
    for (const r of records) for (const m of r.messages) if (m.type === 'session' && typeof m.lease === 'string') owners.set(BigInt(`0x${m.lease}`).toString(), r.name);
    const range = await raw.kv.range({ key: Buffer.from(ns), range_end: Buffer.from(`${ns.slice(0, -1)}0`) });
    result.keysAtQuietEnd = range.kvs.map((kv) => ({
      key: kv.key.toString(),
      createRevision: String(kv.create_revision),
      lease: String(kv.lease),
      owner: kv.lease === '0' ? '-' : (owners.get(String(kv.lease)) ?? 'unknown lease'),
    }));

    // ------------------------------------------------------------------- stop
    await Promise.all(
      finals().map(async (p) => {
        try {
          p.send({ type: 'soak-stop' });
          await p.waitForMessage('soak-stopped', 20_000);
        } catch (err) {
          problemsOf(p.name).push(`soak-stop: ${(err as Error).message.split('\n')[0]}`);
        }
      }),
    );
    let finalCounter = NaN;
    for (let attempt = 0; attempt < 20 && Number.isNaN(finalCounter); attempt++) {
      try {
        finalCounter = Number((await raw.get(counterKey).string()) ?? '0');
      } catch {
        await sleep(500);
      }
    }
    await Promise.all(
      finals().map(async (p) => {
        closing.add(p.name);
        let closed: JsonMessage;
        try {
          p.send({ type: 'close' });
          closed = await p.waitForMessage('closed', 20_000);
        } catch (err) {
          problemsOf(p.name).push(`close: ${(err as Error).message.split('\n')[0]}`);
          await p.kill('SIGKILL');
          return;
        }
        const exited = await Promise.race([p.exited, sleep(EXIT_AFTER_CLOSE_MS).then(() => 'running' as const)]);
        const record = records.find((r) => r.name === p.name)!;
        if (exited === 'running') {
          // Something the app did not release keeps the process alive: report it, then kill it.
          closing.delete(p.name);
          record.unexpectedExit = `still running ${EXIT_AFTER_CLOSE_MS / 1000} s after its app closed (closed at ${new Date(Number(closed.at)).toISOString()})`;
          record.killedAt = undefined;
          await p.kill('SIGKILL');
        } else {
          record.exitAfterCloseMs = Date.now() - Number(closed.at);
        }
      }),
    );
    // Leases of killed workers expire within the TTL; give them that long (plus etcd's 500 ms check).
    let strays = { keys: [] as string[], leases: [] as string[] };
    const cleanBy = Date.now() + ttlMs + 4_000;
    for (;;) {
      const keys = (await raw.getAll().prefix(ns).keys()).filter((k) => k !== counterKey);
      const leases = (await raw.leaseClient.leaseLeases()).leases.map((l) => l.ID);
      strays = { keys, leases };
      if ((keys.length === 0 && leases.length === 0) || Date.now() > cleanBy) break;
      await sleep(250);
    }
    result.phases.shutdownSeconds = secs(stopAt);

    // ------------------------------------------------------------------ check
    const verdict = checkInvariants({
      processes: records,
      permits,
      quietStart,
      finalProcesses: slots.map((s) => s.record.name),
      finalCounter,
      strays,
    });
    result.invariants = verdict.invariants;
    result.ok = verdict.invariants.every((i) => i.ok);

    const all: Array<Record<string, unknown>> = records.flatMap((r) => r.messages.map((m) => ({ ...m, process: r.name })));
    const count = (pred: (m: Record<string, unknown>) => boolean) => all.filter(pred).length;
    const holdsOf = (kind: string) => verdict.holds.filter((h) => h.kind === kind);
    const lostBy = (kind: string) => {
      const codes = new Map<string, number>();
      for (const h of holdsOf(kind)) if (h.endedBy.startsWith('lost')) codes.set(h.endedBy, (codes.get(h.endedBy) ?? 0) + 1);
      return [...codes].map(([c, n]) => `${c.replace(/^lost:/, '')}=${n}`).join(' ') || 'none';
    };
    result.operations = {
      'increments acknowledged': verdict.increments.acked,
      'increments unacknowledged (maybe applied)': verdict.increments.uncertain,
      'increments not sent (hold gone or read failed)': verdict.increments.skipped,
      'final counter': finalCounter,
      'mutex holds': holdsOf('mutex').length,
      'mutex holds ended by their signal': lostBy('mutex'),
      'semaphore permits': holdsOf('sem').length,
      'semaphore permits ended by their signal': lostBy('sem'),
      'max permits held at once': verdict.maxSemConcurrent,
      leaderships: holdsOf('leader').length,
      'leaderships ended by their signal': lostBy('leader'),
      'sessions lost': count((m) => m.type === 'session' && m.status === 'lost'),
      'acquire errors': count((m) => m.type === 'acquire-error'),
      'worker processes': records.length,
      'warnings/errors logged': count((m) => m.type === 'log'),
    };
    result.perWorker = records.map((r) => ({
      process: r.name,
      'mutex holds': verdict.holds.filter((h) => h.process === r.name && h.kind === 'mutex').length,
      increments: r.messages.filter((m) => m.type === 'inc-ack').length,
      permits: verdict.holds.filter((h) => h.process === r.name && h.kind === 'sem').length,
      leaderships: verdict.holds.filter((h) => h.process === r.name && h.kind === 'leader').length,
      freezes: r.freezes.length,
      ended: r.unexpectedExit ? 'unexpected' : r.killedAt !== undefined ? 'SIGKILL' : `closed, exit +${r.exitAfterCloseMs ?? '?'} ms`,
    }));
    for (const m of all) {
      if (m.type !== 'log') continue;
      const key = `${String(m.level)}: ${String(m.message).replace(/\d+/g, 'N').slice(0, 80)}`;
      result.logs[key] = (result.logs[key] ?? 0) + 1;
    }
  } catch (err) {
    result.ok = false;
    result.error = (err as Error).stack ?? String(err);
  } finally {
    await Promise.all([...processes.values()].map((p) => p.kill('SIGKILL').catch(() => undefined)));
    raw?.close();
    await Promise.all(slots.flatMap((s) => s.proxies.map((p) => p.close())));
    await etcdCluster?.stop();
    await single?.stop();
    result.phases.totalSeconds = secs(t0);
  }
  const events: Array<Record<string, unknown>> = [
    ...records.flatMap((r) => r.messages.map((m) => ({ process: r.name, ...m }))),
    ...faults.map((f) => ({ process: 'nemesis', type: 'fault', ...f, at: f.startAt })),
  ];
  events.sort((a, b) => Number(a.at ?? 0) - Number(b.at ?? 0));
  Object.defineProperty(result, 'events', { value: events, enumerable: false });
  return result;
}
