// The soak's outside observer: checks what the worker processes reported (JSON lines with
// timestamps and fencing tokens, see test/fixtures/commands/soak.ts) against the faults the
// nemesis made, and against etcd itself. Pure functions: no I/O.
//
// Holds (mutex holds, semaphore permits, leaderships) are intervals [start, end]:
//  - start: acquire() resolved ('hold'), or the leadership began ('lead');
//  - end: the first of: the worker says it stops ('exit', before release()), its signal aborts
//    ('lost'), or the process was SIGKILLed (it cannot act after that).
//    A hold whose signal aborted on resuming from a SIGSTOP (or whose worker stopped then, with
//    isHeld() false) ends when the process was frozen,
//    provided it did nothing as the holder after the resume (a frozen process cannot act; the
//    library tells it at the first instruction it runs). Any action after the resume keeps
//    the reported end.
// Because 'lost' ends a hold, a holder that was told of its loss only after someone else got
// the hold is an overlap: "told before the other began" is what is checked.
import type { JsonMessage } from '../harness/processes.js';

export type HoldKind = 'mutex' | 'sem' | 'leader';

export interface ProcessRecord {
  /** Worker process name, e.g. w1.0 (slot 1, first incarnation). */
  name: string;
  slot: number;
  messages: JsonMessage[];
  /** When the soak SIGKILLed it. */
  killedAt?: number;
  /** SIGSTOP..SIGCONT periods. */
  freezes: Array<{ start: number; end: number }>;
  /** How it ended if not by our kill or a clean close (e.g. "exit code 1"). */
  unexpectedExit?: string;
  /** The worker did not answer soak-stop or close. */
  stopProblems?: string[];
  /** ms from 'closed' (app.close() done) to the process's exit. */
  exitAfterCloseMs?: number;
}

export interface Observation {
  processes: ProcessRecord[];
  permits: number;
  /** When the last fault was healed. */
  quietStart: number;
  /** Names of the processes alive in the quiet phase (the last incarnation of every slot). */
  finalProcesses: string[];
  /** The counter's value read from etcd after every loop stopped. */
  finalCounter: number;
  /** After every worker closed (and the leases of killed ones had time to expire). */
  strays: { keys: string[]; leases: string[] };
  /** Time within which a freeze-ended hold must report 'lost' after the resume (ms). */
  resumeSlackMs?: number;
}

export interface Hold {
  process: string;
  slot: number;
  kind: HoldKind;
  token: bigint;
  start: number;
  end: number;
  endedBy: string;
  acts: number[];
}

export interface InvariantResult {
  name: string;
  ok: boolean;
  /** What was checked (counts). */
  checked: string;
  violations: string[];
}

export interface Increments {
  acked: number;
  /** Sent but never acknowledged (process killed, or the put failed): applied or not. */
  uncertain: number;
  /** Of the uncertain ones: sent by a process that was then SIGKILLed before the answer. */
  uncertainKilled: number;
  skipped: number;
}

const MAX_LISTED = 25;

const describe = (h: Hold) =>
  `${h.process}#${h.token} [${iso(h.start)} .. ${Number.isFinite(h.end) ? iso(h.end) : 'open'}] (${h.endedBy})`;
const iso = (t: number) => new Date(t).toISOString().slice(11, 23);

function limit(list: string[]): string[] {
  return list.length > MAX_LISTED ? [...list.slice(0, MAX_LISTED), `... and ${list.length - MAX_LISTED} more`] : list;
}

/** Every hold of every process, with ends adjusted for kills and freezes (see the top of the file). */
export function buildHolds(processes: ProcessRecord[], resumeSlackMs = 2_000): Hold[] {
  const out: Hold[] = [];
  for (const p of processes) {
    const open = new Map<string, Hold>();
    const byKey = (kind: string, token: unknown) => `${kind}:${String(token)}`;
    for (const m of p.messages) {
      const at = Number(m.at);
      if (m.type === 'hold' || m.type === 'lead') {
        const kind = (m.type === 'lead' ? 'leader' : m.kind) as HoldKind;
        const hold: Hold = { process: p.name, slot: p.slot, kind, token: BigInt(String(m.token)), start: at, end: Infinity, endedBy: 'open', acts: [] };
        open.set(byKey(kind, m.token), hold);
        out.push(hold);
      } else if (m.type === 'act' || m.type === 'inc-sent') {
        const hold = open.get(byKey(m.type === 'act' ? String(m.kind) : 'mutex', m.token));
        hold?.acts.push(at);
      } else if (m.type === 'exit' || m.type === 'lost') {
        const hold = open.get(byKey(String(m.kind), m.token));
        if (hold && hold.end === Infinity) {
          hold.end = at;
          hold.endedBy = m.type === 'lost' ? `lost:${String(m.code)}` : m.held === false ? 'exit:not held' : 'exit';
        }
      }
    }
    const last = Math.max(0, ...p.messages.map((m) => Number(m.at ?? 0)));
    for (const hold of open.values()) {
      if (p.killedAt !== undefined && hold.start <= p.killedAt && hold.end > p.killedAt) {
        hold.end = p.killedAt;
        hold.endedBy = `${hold.endedBy === 'open' ? '' : `${hold.endedBy}|`}killed`;
      }
      // Told at the resume: the signal aborted, or the worker's isHeld() said no when it stopped.
      if (hold.endedBy.startsWith('lost') || hold.endedBy === 'exit:not held') {
        const freeze = p.freezes.find(
          (f) => f.start > hold.start && f.end <= hold.end && hold.end - f.end <= resumeSlackMs && !hold.acts.some((a) => a >= f.end),
        );
        if (freeze) {
          hold.end = freeze.start;
          hold.endedBy = `${hold.endedBy}|frozen`;
        }
      }
      // Every process has ended when the observer runs: it cannot act after its last message.
      if (hold.end === Infinity) {
        hold.end = Math.max(hold.start, last);
        hold.endedBy = 'open|process ended';
      }
    }
  }
  return out.sort((a, b) => a.start - b.start || a.end - b.end);
}

/** No two holds of `kind` overlap; tokens grow strictly in the order the holds began. */
function exclusive(holds: Hold[], kind: HoldKind, label: string): InvariantResult[] {
  const list = holds.filter((h) => h.kind === kind);
  const overlaps: string[] = [];
  for (let i = 0; i < list.length; i++) {
    const a = list[i]!;
    for (let j = i + 1; j < list.length && list[j]!.start < a.end; j++) {
      const b = list[j]!;
      if (b.start < a.end && a.start < b.end) overlaps.push(`overlap: ${describe(a)} and ${describe(b)}`);
    }
  }
  const tokens: string[] = [];
  for (let i = 1; i < list.length; i++) {
    if (list[i]!.token <= list[i - 1]!.token) tokens.push(`token not increasing: ${describe(list[i - 1]!)} then ${describe(list[i]!)}`);
  }
  return [
    { name: `${label}: no overlapping holders`, ok: overlaps.length === 0, checked: `${list.length} holds`, violations: limit(overlaps) },
    { name: `${label}: fencing tokens strictly increasing`, ok: tokens.length === 0, checked: `${list.length} tokens`, violations: limit(tokens) },
  ];
}

/** At no instant more than `permits` permits held; tokens unique, and increasing per process. */
function semaphoreBound(holds: Hold[], permits: number): { results: InvariantResult[]; maxConcurrent: number } {
  const list = holds.filter((h) => h.kind === 'sem');
  // Ends sort before starts at the same instant: [a, t] and [t, b] do not overlap.
  const events = list.flatMap((h) => [
    { t: h.start, d: 1, h },
    { t: h.end, d: -1, h },
  ]);
  events.sort((x, y) => x.t - y.t || x.d - y.d);
  const inside = new Set<Hold>();
  let maxConcurrent = 0;
  const over: string[] = [];
  for (const e of events) {
    if (e.d < 0) inside.delete(e.h);
    else {
      inside.add(e.h);
      maxConcurrent = Math.max(maxConcurrent, inside.size);
      if (inside.size > permits) over.push(`${inside.size} permits held at ${iso(e.t)} (permits ${permits}): ${[...inside].map(describe).join(', ')}`);
    }
  }
  const tokens: string[] = [];
  const seen = new Map<bigint, Hold>();
  for (const h of list) {
    const before = seen.get(h.token);
    if (before) tokens.push(`token used twice: ${describe(before)} and ${describe(h)}`);
    seen.set(h.token, h);
  }
  const byProcess = new Map<string, Hold[]>();
  for (const h of list) byProcess.set(h.process, [...(byProcess.get(h.process) ?? []), h]);
  for (const own of byProcess.values()) {
    for (let i = 1; i < own.length; i++) {
      if (own[i]!.token <= own[i - 1]!.token) tokens.push(`token not increasing in ${own[i]!.process}: ${describe(own[i - 1]!)} then ${describe(own[i]!)}`);
    }
  }
  return {
    maxConcurrent,
    results: [
      { name: `semaphore: never more than ${permits} permits held`, ok: over.length === 0, checked: `${list.length} permits, at most ${maxConcurrent} at once`, violations: limit(over) },
      { name: 'semaphore: fencing tokens unique and increasing per process', ok: tokens.length === 0, checked: `${list.length} tokens`, violations: limit(tokens) },
    ],
  };
}

/** Every action was made inside its own hold (the worker checks isHeld() before acting). */
function actsInsideHolds(holds: Hold[]): InvariantResult {
  const problems: string[] = [];
  let acts = 0;
  for (const h of holds) {
    for (const a of h.acts) {
      acts++;
      if (a < h.start || a > h.end) problems.push(`${h.kind} action at ${iso(a)} outside its hold ${describe(h)}`);
    }
  }
  return { name: 'actions only while holding', ok: problems.length === 0, checked: `${acts} actions`, violations: limit(problems) };
}

interface Inc {
  id: number;
  process: string;
  token: string;
  read: number;
  wrote: number;
  sentAt: number;
  ackAt?: number;
  error?: string;
}

export function increments(processes: ProcessRecord[]): { list: Inc[]; counts: Increments } {
  const list: Inc[] = [];
  let skipped = 0;
  let uncertainKilled = 0;
  for (const p of processes) {
    const byId = new Map<number, Inc>();
    for (const m of p.messages) {
      if (m.type === 'inc-sent') {
        const inc: Inc = { id: Number(m.id), process: p.name, token: String(m.token), read: Number(m.read), wrote: Number(m.wrote), sentAt: Number(m.at) };
        byId.set(inc.id, inc);
        list.push(inc);
      } else if (m.type === 'inc-ack') {
        const inc = byId.get(Number(m.id));
        if (inc) inc.ackAt = Number(m.at);
      } else if (m.type === 'inc-error') {
        const inc = byId.get(Number(m.id));
        if (inc) inc.error = String(m.code);
      } else if (m.type === 'inc-skip') skipped++;
    }
    for (const inc of byId.values()) if (inc.ackAt === undefined && inc.error === undefined && p.killedAt !== undefined) uncertainKilled++;
  }
  const acked = list.filter((i) => i.ackAt !== undefined).length;
  return { list, counts: { acked, uncertain: list.length - acked, uncertainKilled, skipped } };
}

/** No lost update: acknowledged increments wrote distinct values, and the final counter is explained by them. */
function noLostUpdate(processes: ProcessRecord[], finalCounter: number): { result: InvariantResult; counts: Increments } {
  const { list, counts } = increments(processes);
  const problems: string[] = [];
  const freezesOf = new Map(processes.map((p) => [p.name, p.freezes]));
  const describeInc = (i: Inc) => {
    const frozen = (freezesOf.get(i.process) ?? []).some((f) => f.start < (i.ackAt ?? Infinity) && f.end > i.sentAt);
    return `${i.process} token ${i.token} read ${i.read} wrote ${i.wrote} (sent ${iso(i.sentAt)}${i.ackAt ? `, acked ${iso(i.ackAt)}` : `, ${i.error ?? 'no answer'}`}${frozen ? ', frozen by SIGSTOP between send and answer' : ''})`;
  };
  const byValue = new Map<number, Inc>();
  for (const inc of list) {
    if (inc.ackAt === undefined) continue;
    const other = byValue.get(inc.wrote);
    if (other) problems.push(`lost update: two acknowledged increments wrote ${inc.wrote}: ${describeInc(other)} and ${describeInc(inc)}`);
    else byValue.set(inc.wrote, inc);
  }
  const lo = counts.acked;
  const hi = counts.acked + counts.uncertain;
  if (finalCounter < lo || finalCounter > hi) {
    problems.push(
      `final counter ${finalCounter} outside [acknowledged ${lo}, acknowledged + unacknowledged ${hi}]` +
        (finalCounter < lo ? ` (${lo - finalCounter} acknowledged increment(s) lost)` : ''),
    );
  }
  return {
    counts,
    result: {
      name: 'counter: no lost update',
      ok: problems.length === 0,
      checked: `final ${finalCounter}; ${counts.acked} acknowledged, ${counts.uncertain} unacknowledged (${counts.uncertainKilled} of a killed worker)`,
      violations: limit(problems),
    },
  };
}

/** Every process of the quiet phase held the mutex, incremented, held a permit and led, after the faults stopped. */
function progress(obs: Observation, holds: Hold[]): InvariantResult {
  const problems: string[] = [];
  for (const name of obs.finalProcesses) {
    const p = obs.processes.find((x) => x.name === name);
    const after = (pred: (m: JsonMessage) => boolean) => (p?.messages ?? []).some((m) => Number(m.at) >= obs.quietStart && pred(m));
    const missing: string[] = [];
    if (!after((m) => m.type === 'hold' && m.kind === 'mutex')) missing.push('no mutex hold');
    if (!after((m) => m.type === 'inc-ack')) missing.push('no acknowledged increment');
    if (!after((m) => m.type === 'hold' && m.kind === 'sem')) missing.push('no semaphore permit');
    if (!holds.some((h) => h.process === name && h.kind === 'leader' && h.start >= obs.quietStart)) missing.push('never led');
    if (missing.length > 0) problems.push(`${name}: ${missing.join(', ')} after the faults stopped (${iso(obs.quietStart)})`);
  }
  return { name: 'progress: every worker holds, increments and leads after the faults', ok: problems.length === 0, checked: `${obs.finalProcesses.length} workers`, violations: problems };
}

function clean(obs: Observation): InvariantResult {
  const problems = [
    ...obs.strays.keys.map((k) => `key left: ${k}`),
    ...obs.strays.leases.map((l) => `lease left: ${l}`),
  ];
  return { name: 'etcd clean at the end (only the counter key, no lease)', ok: problems.length === 0, checked: 'keys under the namespace, leases', violations: limit(problems) };
}

function healthy(obs: Observation): InvariantResult {
  const problems: string[] = [];
  for (const p of obs.processes) {
    if (p.unexpectedExit) problems.push(`${p.name} ended unexpectedly: ${p.unexpectedExit}`);
    for (const s of p.stopProblems ?? []) problems.push(`${p.name} did not stop cleanly: ${s}`);
    for (const m of p.messages) if (m.type === 'error') problems.push(`${p.name}: command failed: ${String(m.code)} ${String(m.message)}`);
  }
  return { name: 'workers: no crash, no failed command', ok: problems.length === 0, checked: `${obs.processes.length} processes`, violations: limit(problems) };
}

export interface Verdict {
  invariants: InvariantResult[];
  holds: Hold[];
  increments: Increments;
  maxSemConcurrent: number;
}

export function checkInvariants(obs: Observation): Verdict {
  const holds = buildHolds(obs.processes, obs.resumeSlackMs);
  const sem = semaphoreBound(holds, obs.permits);
  const counter = noLostUpdate(obs.processes, obs.finalCounter);
  return {
    invariants: [
      counter.result,
      ...exclusive(holds, 'mutex', 'mutex'),
      ...exclusive(holds, 'leader', 'election'),
      ...sem.results,
      actsInsideHolds(holds),
      progress(obs, holds),
      clean(obs),
      healthy(obs),
    ],
    holds,
    increments: counter.counts,
    maxSemConcurrent: sem.maxConcurrent,
  };
}
