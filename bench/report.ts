// Renders a run's results: results.json, results.md (tables), chart.svg (drawn here, no
// external service) and the generated figures block of README.md.
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import type { References } from './context.js';
import type { CodeInfo, MachineInfo } from './machine.js';
import type { ContendedResult } from './sections/contended.js';
import type { FailoverResult } from './sections/failover.js';
import type { HerdResult, HerdRun } from './sections/herd.js';
import type { LeaderOnlyResult } from './sections/leader-only.js';
import type { ShardsResult } from './sections/shards.js';
import type { ScaleResult } from './sections/scale.js';
import type { UncontendedResult } from './sections/uncontended.js';
import type { ProfileResult } from './sections/profile.js';
import type { Summary } from './stats.js';
import { issue16ReadmeLines, issue16Targets, renderIssue16Markdown } from './report-extra.js';

export interface BenchResults {
  schema: 1;
  generatedAt: string;
  quick: boolean;
  durationSeconds: number;
  machine: MachineInfo;
  code: CodeInfo;
  /** Set when the run was made with an experiment preloaded (bench/experiments), e.g. 'watch-anchor'. */
  experiment?: string;
  /** Per section: duration and the machine's 1-minute load average before and after (noise indicator). */
  sectionLoad: Record<string, { seconds: number; loadAtStart: number; loadAtEnd: number; cpuBusyPercent?: number }>;
  /** Whether the Go yardstick ran (etcd's own concurrency.Mutex / Election), or why not. */
  go?: { available: boolean; goVersion?: string; reason?: string };
  sections: {
    uncontended?: UncontendedResult;
    reference?: References;
    contended?: ContendedResult;
    herd?: HerdResult;
    scale?: ScaleResult;
    failover?: FailoverResult;
    leaderOnly?: LeaderOnlyResult;
    profile?: ProfileResult;
    shards?: ShardsResult;
  };
  /** Section id -> error, for sections that failed. */
  errors: Record<string, string>;
  targets?: TargetResult[];
}

export interface TargetResult {
  id: string;
  target: string;
  measured: string;
  /** null when the section did not run. */
  met: boolean | null;
}

const fmt = (v: number | undefined, digits = 2): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits));
const ms = (v: number | undefined): string => `${fmt(v)} ms`;

export function evaluateTargets(r: BenchResults): TargetResult[] {
  const s = r.sections;
  const out: TargetResult[] = [];
  const add = (id: string, target: string, measured: string | undefined, met: boolean | undefined) =>
    out.push({ id, target, measured: measured ?? 'not measured', met: measured === undefined ? null : (met ?? null) });
  const u = s.uncontended;
  add('uncontended-vs-etcd3', 'Uncontended cycle >= 1.5x faster than etcd3 Lock (p50)',
    u && `${fmt(u.ratios.etcd3LockOverOursP50)}x (${ms(u.ours.cycle.p50)} vs ${ms(u.etcd3Lock.cycle.p50)})`,
    u && u.ratios.etcd3LockOverOursP50 >= 1.5);
  add('uncontended-vs-bound', 'Uncontended cycle within 1.15x of two sequential writes (p50)',
    u && `${fmt(u.ratios.oursOverBoundP50)}x (${ms(u.ours.cycle.p50)} vs ${ms(u.twoWriteBound.cycle.p50)})`,
    u && u.ratios.oursOverBoundP50 <= 1.15);
  const c = s.contended;
  add('handoff', 'Contended handoff p50 within 2x of one etcd write (write measured under the same load)',
    c && `${fmt(c.ratios.handoffP50OverWriteUnderLoadP50)}x (${ms(c.ours.handoff.p50)} vs write under load ${ms(c.ours.writeUnderLoad.p50)}; ` +
      `vs idle hot-loop write ${ms(s.reference?.writeP50)}: ${fmt(c.ratios.handoffP50OverWriteP50)}x)`,
    c && c.ratios.handoffP50OverWriteUnderLoadP50 <= 2);
  const sc = s.scale;
  add('one-lease', `One lease regardless of lock count (${sc?.ours.locks.toLocaleString('en-US') ?? '10,000'} held)`,
    sc && `${sc.ours.leases} lease(s) for ${sc.ours.locks} locks (etcd3 Lock: ${sc.etcd3Lock.leases})`,
    sc && sc.ours.leases === 1 && sc.ours.leasesOnLockKeys === 1);
  const h = s.herd;
  if (h && h.ours.length > 0) {
    const small = h.ours[0]!;
    const large = h.ours.at(-1)!;
    const naive = h.naivePrefixWatch.at(-1);
    add('herd', 'O(1) watch events per handoff',
      `${fmt(small.watchEventsPerHandoff)} at ${small.waiters} waiters, ${fmt(large.watchEventsPerHandoff)} at ${large.waiters}` +
        (naive ? ` (naive prefix watch: ${fmt(naive.watchEventsPerHandoff)} at ${naive.waiters})` : ''),
      large.watchEventsPerHandoff <= 1.5 && large.watchEventsPerHandoff <= small.watchEventsPerHandoff * 1.25 + 0.1);
  } else add('herd', 'O(1) watch events per handoff', undefined, undefined);
  const f = s.failover;
  add('graceful', 'Graceful failover within 2 etcd round trips + watch delivery (p50; bound = the raw etcd3 chain, same conditions)',
    f && `${ms(f.graceful.newLeaderActing.p50)} p50, ${ms(f.graceful.newLeaderActing.max)} max; raw chain ${ms(f.graceful.boundMs)} ` +
      `(${fmt(f.graceful.p50OverBound)}x); hot-loop 2 RTT + watch ${ms(f.graceful.hotLoopSumMs)} (${fmt(f.graceful.p50OverHotLoopSum)}x)`,
    f && f.graceful.newLeaderActing.p50 <= f.graceful.boundMs);
  add('crash', 'Crash failover within TTL + 1 s (every trial)',
    f && `${ms(f.crash.newLeaderActing.p50)} p50, ${ms(f.crash.newLeaderActing.max)} max (TTL ${f.sessionTtlSeconds} s, target ${ms(f.crash.targetMs)})`,
    f && f.crash.newLeaderActing.max <= f.crash.targetMs);
  const l = s.leaderOnly;
  add('leader-only', '@LeaderOnly < 5 us per call',
    l && `${fmt(l.overheadNs.syncLeader / 1000, 3)} us sync, ${fmt(l.overheadNs.asyncLeader / 1000, 3)} us async`,
    l && Math.max(l.overheadNs.syncLeader, l.overheadNs.asyncLeader) < 5_000);
  return [...out, ...issue16Targets(r)];
}

// ----------------------------------------------------------------- markdown

const metMark = (met: boolean | null) => (met === null ? 'n/a' : met ? 'met' : '**missed**');
const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;
const sumCells = (s: Summary) => [fmt(s.p50), fmt(s.p99), fmt(s.mean), String(s.n)];

function machineLines(r: BenchResults): string[] {
  const m = r.machine;
  return [
    `- Machine: ${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB RAM, ${m.kernel}`,
    `- Node ${m.node}, etcd ${m.etcd} (single member on loopback), etcd data dir on **${m.etcdDataFs}** (${m.etcdDataMount})`,
    `- Load average (1/5/15 min) at start ${m.loadAverageAtStart.join(' / ')}, at end ${(m.loadAverageAtEnd ?? []).join(' / ')}; ${m.note}`,
    `- Code: commit ${r.code.commit}${r.code.dirtyLibFiles.length ? ` plus uncommitted changes in ${r.code.dirtyLibFiles.join(', ')}` : ''}`,
    `- Run: ${r.generatedAt}, ${r.durationSeconds} s in all${r.quick ? ' (QUICK smoke run: small samples, not for quoting)' : ''}` +
      (r.experiment ? ` — **EXPERIMENT ${r.experiment} preloaded: not the library as committed**` : ''),
    `- 1-minute load average per section (start -> end): ${Object.entries(r.sectionLoad ?? {}).map(([id, l]) => `${id}: ${l.loadAtStart} -> ${l.loadAtEnd}${l.cpuBusyPercent !== undefined ? ` (CPU ${l.cpuBusyPercent} % busy)` : ''}`).join(', ')}`,
  ];
}

export function renderTargetsTable(r: BenchResults): string[] {
  const lines = [row(['Target', 'Measured', 'Result']), row(['---', '---', '---'])];
  for (const t of r.targets ?? evaluateTargets(r)) lines.push(row([t.target, t.measured, metMark(t.met)]));
  return lines;
}

function herdRows(name: string, runs: HerdRun[]): string[] {
  return runs.map((h) =>
    row([name, h.waiters, fmt(h.watchEventsPerHandoff), fmt(h.clientWatchEventsPerHandoff), fmt(h.etcdRequestsPerHandoff), fmt(h.watchStreamsOpenedPerHandoff), fmt(h.handoff.p50), fmt(h.handoff.p99), fmt(h.chainMs, 1)]),
  );
}

export function renderMarkdown(r: BenchResults): string {
  const s = r.sections;
  const out: string[] = ['# Benchmark results', '', 'Generated by `npm run bench` (bench/run.ts). Times in ms unless noted; p50/p99 are nearest-rank percentiles.', ''];
  out.push(...machineLines(r), '', '## Targets', '', ...renderTargetsTable(r), '');
  for (const [id, err] of Object.entries(r.errors)) out.push(`> Section ${id} FAILED: ${err.split('\n')[0]}`, '');

  if (s.uncontended) {
    const u = s.uncontended;
    out.push('## 1. Uncontended acquire + release', '', row(['Variant', 'p50', 'p99', 'mean', 'n']), row(['---', '---:', '---:', '---:', '---:']));
    out.push(row(['LockService acquire + release', ...sumCells(u.ours.cycle)]));
    out.push(row(['  acquire (1 txn)', ...sumCells(u.ours.acquire)]));
    out.push(row(['  release (1 txn)', ...sumCells(u.ours.release)]));
    out.push(row(['etcd3 `client.lock()` acquire + release', ...sumCells(u.etcd3Lock.cycle)]));
    out.push(row(['  acquire (LeaseGrant + Txn)', ...sumCells(u.etcd3Lock.acquire)]));
    out.push(row(['  release (LeaseRevoke)', ...sumCells(u.etcd3Lock.release)]));
    out.push(row(['Two-write bound: put on lease + delete', ...sumCells(u.twoWriteBound.cycle)]));
    if (u.rawSameTxns) out.push(row(["LockService's two txns sent raw (no library code)", ...sumCells(u.rawSameTxns.cycle)]));
    out.push(row(['Reference: one write (put on a lease)', ...sumCells(u.reference.writeRtt)]));
    out.push(row(['Reference: one linearizable read', ...sumCells(u.reference.readRtt)]));
    out.push(row(['Reference: put start -> watch event at another client', ...sumCells(u.reference.writeToWatchEvent)]));
    out.push('', `Ratios: etcd3 Lock / ours = **${fmt(u.ratios.etcd3LockOverOursP50)}x** at p50 (${fmt(u.ratios.etcd3LockOverOursP99)}x at p99); ` +
      `ours / two-write bound = **${fmt(u.ratios.oursOverBoundP50)}x** at p50 (${fmt(u.ratios.oursOverBoundP99)}x at p99)` +
      (u.rawSameTxns ? `, of which the txn shape (raw txns / bound) ${fmt(u.ratios.rawSameTxnsOverBoundP50)}x and the library's code (ours / raw txns) ${fmt(u.ratios.oursOverRawSameTxnsP50)}x.` : '.'),
      '', `Method: ${u.method}`, '');
  }
  if (s.contended) {
    const c = s.contended;
    out.push(`## 2. Contended: ${c.workers} processes on one lock`, '',
      row(['Implementation', 'acquisitions/s', 'handoff p50', 'handoff p99', 'handoff max', 'write under load p50', 'etcd requests / acquisition', 'watch streams opened / acquisition', 'watch reconnects', 'acquisitions per worker (min-max)', 'exclusion violations']),
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const [name, p] of [['LockService (FIFO queue)', c.ours], ['etcd3 Lock + retry loop', c.etcd3Lock]] as const) {
      out.push(row([name, fmt(p.throughputPerSec, 1), fmt(p.handoff.p50), fmt(p.handoff.p99), fmt(p.handoff.max), fmt(p.writeUnderLoad.p50), fmt(p.etcdRequestsPerAcquisition),
        fmt(p.watchStreamsOpenedPerAcquisition), String(p.watchDisconnects),
        `${Math.min(...p.perWorker)}-${Math.max(...p.perWorker)}`, String(p.mutualExclusionViolations + (p.fencingOrderViolations ?? 0))]));
    }
    out.push('', `Throughput ours / etcd3 = **${fmt(c.ratios.throughputOursOverEtcd3)}x**; handoff p50 etcd3 / ours = **${fmt(c.ratios.handoffP50Etcd3OverOurs)}x**; ` +
      `handoff p50 / one write under the same load = **${fmt(c.ratios.handoffP50OverWriteUnderLoadP50)}x** (/ idle hot-loop write: ${fmt(c.ratios.handoffP50OverWriteP50)}x). ` +
      `etcd3 failed try-lock attempts per acquisition: ${fmt(c.etcd3Lock.failedAttemptsPerAcquisition)}.`,
      '', `etcd requests by method (ours): ${JSON.stringify(c.ours.etcdRequestsByMethod)}; (etcd3): ${JSON.stringify(c.etcd3Lock.etcdRequestsByMethod)}`,
      '', `Method: ${c.method}`, '');
  }
  if (s.herd) {
    out.push('## 3. Herd effect', '',
      row(['Implementation', 'waiters', 'watch events / handoff (etcd metric)', 'watch events / handoff (client count)', 'etcd requests / handoff', 'watch streams opened / handoff', 'handoff p50', 'handoff p99', 'whole chain']),
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
      ...herdRows('LockService (watch predecessor)', s.herd.ours),
      ...herdRows('naive (watch whole prefix)', s.herd.naivePrefixWatch),
      '', `Method: ${s.herd.method}`, '');
  }
  if (s.scale) {
    const kb = (b: number) => `${(b / 1024).toFixed(2)} KiB`;
    out.push(`## 4. Scale: locks held by one process (ours ${s.scale.ours.locks}, etcd3 ${s.scale.etcd3Lock.locks})`, '',
      row(['Implementation', 'locks', 'leases', 'watches', 'lock keys', 'acquire all', 'release all', 'heap / lock', 'RSS / lock', 'RSS while holding', 'process warnings']),
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---']));
    for (const [name, x] of [['LockService', s.scale.ours], ['etcd3 Lock', s.scale.etcd3Lock]] as const) {
      out.push(row([name, x.locks, x.leases, x.watches, x.keys, ms(x.acquireAllMs), ms(x.releaseAllMs), kb(x.heapBytesPerLock), kb(x.rssBytesPerLock),
        `${(x.memoryHeld.rss / 2 ** 20).toFixed(1)} MiB`, x.warnings.length ? x.warnings.map((w) => w.replace(/\|/g, '/')).join('; ') : 'none']));
    }
    const lost = [s.scale.ours, s.scale.oursLarge].filter((x) => x?.completed && x.lostAtHeld !== undefined)
      .map((x) => `${x!.locks}: ${x!.lostAtHeld} lost when all were acquired, ${x!.lostAfterCounts} after the counts`);
    const big = s.scale.oursLarge;
    if (big) {
      out.push(big.completed
        ? row([`LockService (${big.locks})`, big.locks, big.leases, big.watches, big.keys, ms(big.acquireAllMs), ms(big.releaseAllMs), kb(big.heapBytesPerLock), kb(big.rssBytesPerLock), `${(big.memoryHeld.rss / 2 ** 20).toFixed(1)} MiB`, big.warnings.join('; ') || 'none'])
        : row([`LockService (${big.locks}, capped at ${fmt((big.capMs ?? NaN) / 1000, 0)} s)`, big.locks, 'n/a', `${big.watches} open at the cap`, 'n/a', `**not finished**: ${big.heldAtCap} held at the cap`, 'n/a', 'n/a', 'n/a', 'n/a', '']));
    }
    if (lost.length) out.push('', `Holds whose signal had aborted (session or key lost) — ${lost.join('; ')}.`);
    out.push('', `Method: ${s.scale.method}`, '');
  }
  if (s.failover) {
    const f = s.failover;
    out.push(`## 5. Leader failover (session TTL ${f.sessionTtlSeconds} s)`, '',
      row(['Kind', 'trials', 'new leader acting p50', 'max', 'old key deleted (outside watch) p50', 'bound / target']),
      row(['---', '---:', '---:', '---:', '---:', '---:']),
      row(['graceful (app.close -> resign)', f.graceful.newLeaderActing.n, fmt(f.graceful.newLeaderActing.p50), fmt(f.graceful.newLeaderActing.max), fmt(f.graceful.handoverSeenInEtcd.p50), `${fmt(f.graceful.boundMs)} (raw chain p50)`]),
      row(['raw etcd3 chain: delete -> watch -> read', f.graceful.rawChain.n, fmt(f.graceful.rawChain.p50), fmt(f.graceful.rawChain.max), '', `hot-loop sum ${fmt(f.graceful.hotLoopSumMs)}`]),
      row(['crash (SIGKILL -> lease expiry)', f.crash.newLeaderActing.n, fmt(f.crash.newLeaderActing.p50), fmt(f.crash.newLeaderActing.max), fmt(f.crash.handoverSeenInEtcd.p50), `${fmt(f.crash.targetMs, 0)} (TTL + 1 s)`]),
      ...(f.graceful.deleteToActing
        ? ['', `From the new leader's side (graceful, p50): its DELETE event arrived **${fmt(f.graceful.resignToDeleteAtNewLeader.p50)} ms** after the resign request was sent ` +
            `(max ${fmt(f.graceful.resignToDeleteAtNewLeader.max)}), and its leader$ said isLeader **${fmt(f.graceful.deleteToActing.p50)} ms** after that event (max ${fmt(f.graceful.deleteToActing.max)}).`]
        : []),
      '', 'Per trial, ms from close()/SIGKILL: resign sent / resign answered / old key DELETE seen outside / DELETE at the new leader / new leader\'s check sent / answered / new leader acting:', '',
      row(['Trial', 'resign sent', 'resign done', 'DELETE seen (outside)', 'DELETE at new leader', 'check sent', 'check done', 'acting', 'etcd requests', 'watch events']),
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
      ...f.trials.map((t) => row([`${t.kind} ${t.from}->${t.to}`, fmt(t.steps?.resignSent), fmt(t.steps?.resignDone), fmt(t.handoverSeenInEtcdMs), fmt(t.steps?.deleteAtNewLeader), fmt(t.steps?.checkSent), fmt(t.steps?.checkDone), fmt(t.newLeaderActingMs), String(t.etcdRequests ?? 'n/a'), String(t.watchEventsSent ?? 'n/a')])),
      '', `Method: ${f.method}`, '');
  }
  if (s.leaderOnly) {
    const l = s.leaderOnly;
    out.push('## 6. `@LeaderOnly` overhead', '', row(['Method', 'ns / call (median)']), row(['---', '---:']));
    for (const [k, v] of Object.entries(l.nsPerCall)) out.push(row([k, fmt(v, 1)]));
    out.push('', `Overhead: **${fmt(l.overheadNs.syncLeader, 1)} ns** sync, **${fmt(l.overheadNs.asyncLeader, 1)} ns** async (leader path); ` +
      `${fmt(l.overheadNs.syncNotLeaderSkip, 1)} ns on the skip path. The undecorated async method cost ${fmt(l.plainAsyncBeforeAnyAlsRunNs, 1)} ns before the ` +
      `process's first AsyncLocalStorage.run and ${fmt(l.nsPerCall.plainAsync, 1)} ns after (${fmt(l.processWideAwaitTaxNs, 1)} ns: Node 20 turns on promise hooks process-wide).`,
      '', `Method: ${l.method}`, '');
  }
  out.push(...renderIssue16Markdown(r));
  if (s.shards) {
    const h = s.shards;
    out.push(`## 8. Shards: ${h.members} members x ${h.shards} shards`, '',
      row(['Phase', 'settled (ms)', 'shards moved', 'etcd requests', 'requests / move', 'watch events', 'watch events / move']),
      row(['---', '---:', '---:', '---:', '---:', '---:', '---:']),
      ...([['start (every member opens the group at once)', h.start], ['graceful leave (app close)', h.gracefulLeave], [`crash (SIGKILL, TTL ${h.ttlSeconds} s)`, h.crash]] as const).map(([label, p]) =>
        row([label, fmt(p.settleMs, 0), String(p.moved), String(p.etcdRequests), fmt(p.requestsPerMove, 2), String(p.watchEvents), fmt(p.watchEventsPerMove, 2)])),
      '', `Start took ${fmt(h.start.fromFirstStartMs, 0)} ms from the first process start (apps boot one by one); at most ${h.maxPerMember} shards per member once settled (bound ceil(N/M)+1 = ${Math.ceil(h.shards / h.members) + 1}).`,
      '', `Method: ${h.method}`, '');
  }
  return `${out.join('\n')}\n`;
}

// ---------------------------------------------------------------------- svg

interface Bar {
  label: string;
  value: number;
  /** A tick drawn on the bar (e.g. p99). */
  tick?: number;
  color: string;
  text: string;
}

interface Panel {
  title: string;
  bars: Bar[];
  marker?: { value: number; label: string };
}

const OURS = '#2f6db5';
const OTHER = '#c4663a';
const BOUND = '#7a8a99';

function esc(text: string): string {
  return text.replace(/&/g, '&amp;').replace(/</g, '&lt;').replace(/>/g, '&gt;');
}

function drawPanel(p: Panel, x: number, y: number, w: number, h: number): string {
  const labelW = 150;
  const valueW = 100;
  const top = 32;
  const barH = Math.min(24, (h - top - 22) / Math.max(1, p.bars.length) - 8);
  const values = p.bars.flatMap((b) => [b.value, b.tick ?? 0]);
  if (p.marker) values.push(p.marker.value);
  const max = Math.max(...values.filter(Number.isFinite), 1e-9) * 1.05;
  const plotW = w - labelW - valueW - 10;
  const sx = (v: number) => x + labelW + (Math.max(0, v) / max) * plotW;
  const parts = [
    `<rect x="${x}" y="${y}" width="${w}" height="${h}" fill="#fbfbfc" stroke="#dde1e6"/>`,
    `<text x="${x + 10}" y="${y + 20}" font-size="13" font-weight="600">${esc(p.title)}</text>`,
    `<line x1="${sx(0)}" x2="${sx(0)}" y1="${y + top - 4}" y2="${y + h - 16}" stroke="#aab2bb"/>`,
  ];
  p.bars.forEach((b, i) => {
    const by = y + top + i * (barH + 8);
    const width = Number.isFinite(b.value) ? sx(b.value) - sx(0) : 0;
    parts.push(`<text x="${x + labelW - 6}" y="${by + barH / 2 + 4}" font-size="11" text-anchor="end">${esc(b.label)}</text>`);
    parts.push(`<rect x="${sx(0)}" y="${by}" width="${Math.max(1, width)}" height="${barH}" fill="${b.color}"/>`);
    if (b.tick !== undefined && Number.isFinite(b.tick)) {
      parts.push(`<line x1="${sx(b.tick)}" x2="${sx(b.tick)}" y1="${by - 2}" y2="${by + barH + 2}" stroke="#222" stroke-width="2"/>`);
    }
    parts.push(`<text x="${x + w - valueW + 4}" y="${by + barH / 2 + 4}" font-size="11" fill="#222">${esc(b.text)}</text>`);
  });
  if (p.marker && Number.isFinite(p.marker.value)) {
    const mx = sx(p.marker.value);
    parts.push(`<line x1="${mx}" x2="${mx}" y1="${y + top - 6}" y2="${y + h - 16}" stroke="#1a8f3c" stroke-width="1.5" stroke-dasharray="4 3"/>`);
    parts.push(`<text x="${mx}" y="${y + h - 4}" font-size="10" fill="#1a8f3c" text-anchor="${mx > x + w - valueW - 60 ? 'end' : mx < x + labelW + 60 ? 'start' : 'middle'}">${esc(p.marker.label)}</text>`);
  }
  return parts.join('\n');
}

export function renderSvg(r: BenchResults): string {
  const s = r.sections;
  const panels: Panel[] = [];
  const u = s.uncontended;
  if (u) {
    panels.push({
      title: '1. Uncontended acquire + release (ms; bar p50, tick p99)',
      bars: [
        { label: 'LockService', value: u.ours.cycle.p50, tick: u.ours.cycle.p99, color: OURS, text: `${fmt(u.ours.cycle.p50)} / ${fmt(u.ours.cycle.p99)}` },
        { label: 'etcd3 client.lock()', value: u.etcd3Lock.cycle.p50, tick: u.etcd3Lock.cycle.p99, color: OTHER, text: `${fmt(u.etcd3Lock.cycle.p50)} / ${fmt(u.etcd3Lock.cycle.p99)}` },
        { label: 'two raw writes (bound)', value: u.twoWriteBound.cycle.p50, tick: u.twoWriteBound.cycle.p99, color: BOUND, text: `${fmt(u.twoWriteBound.cycle.p50)} / ${fmt(u.twoWriteBound.cycle.p99)}` },
        ...(u.rawSameTxns
          ? [{ label: 'our 2 txns, sent raw', value: u.rawSameTxns.cycle.p50, tick: u.rawSameTxns.cycle.p99, color: BOUND, text: `${fmt(u.rawSameTxns.cycle.p50)} / ${fmt(u.rawSameTxns.cycle.p99)}` }]
          : []),
      ],
    });
  }
  const c = s.contended;
  if (c) {
    panels.push({
      title: `2. Contended handoff, ${c.workers} processes (ms; bar p50, tick p99)`,
      bars: [
        { label: `LockService ${fmt(c.ours.throughputPerSec, 0)}/s`, value: c.ours.handoff.p50, tick: c.ours.handoff.p99, color: OURS, text: `${fmt(c.ours.handoff.p50)} / ${fmt(c.ours.handoff.p99)}` },
        { label: `etcd3 + retry ${fmt(c.etcd3Lock.throughputPerSec, 0)}/s`, value: c.etcd3Lock.handoff.p50, tick: c.etcd3Lock.handoff.p99, color: OTHER, text: `${fmt(c.etcd3Lock.handoff.p50)} / ${fmt(c.etcd3Lock.handoff.p99)}` },
      ],
      marker: { value: 2 * c.ours.writeUnderLoad.p50, label: `2 x write under load = ${fmt(2 * c.ours.writeUnderLoad.p50)}` },
    });
  }
  const h = s.herd;
  if (h) {
    panels.push({
      title: '3. Watch events delivered per handoff',
      bars: [
        ...h.ours.map((x) => ({ label: `LockService, ${x.waiters} waiters`, value: x.watchEventsPerHandoff, color: OURS, text: fmt(x.watchEventsPerHandoff) })),
        ...h.naivePrefixWatch.map((x) => ({ label: `prefix watch, ${x.waiters} waiters`, value: x.watchEventsPerHandoff, color: OTHER, text: fmt(x.watchEventsPerHandoff) })),
      ],
    });
  }
  const sc = s.scale;
  if (sc) {
    panels.push({
      title: `4. Leases for ${sc.ours.locks} held locks (etcd3 Lock: ${sc.etcd3Lock.locks})`,
      bars: [
        { label: 'LockService', value: sc.ours.leases, color: OURS, text: String(sc.ours.leases) },
        { label: 'etcd3 client.lock()', value: sc.etcd3Lock.leases, color: OTHER, text: String(sc.etcd3Lock.leases) },
      ],
    });
  }
  const f = s.failover;
  if (f) {
    panels.push({
      title: `5a. Graceful failover (ms; bar p50, tick max)`,
      bars: [
        { label: 'new leader acting', value: f.graceful.newLeaderActing.p50, tick: f.graceful.newLeaderActing.max, color: OURS, text: `${fmt(f.graceful.newLeaderActing.p50)} / ${fmt(f.graceful.newLeaderActing.max)}` },
        { label: 'old key gone (etcd)', value: f.graceful.handoverSeenInEtcd.p50, tick: f.graceful.handoverSeenInEtcd.max, color: BOUND, text: `${fmt(f.graceful.handoverSeenInEtcd.p50)} / ${fmt(f.graceful.handoverSeenInEtcd.max)}` },
        { label: 'raw etcd3 chain', value: f.graceful.rawChain.p50, tick: f.graceful.rawChain.max, color: BOUND, text: `${fmt(f.graceful.rawChain.p50)} / ${fmt(f.graceful.rawChain.max)}` },
      ],
      marker: { value: f.graceful.boundMs, label: `raw chain ${fmt(f.graceful.boundMs)}` },
    });
    panels.push({
      title: `5b. Crash failover, TTL ${f.sessionTtlSeconds} s (ms; bar p50, tick max)`,
      bars: [
        { label: 'new leader acting', value: f.crash.newLeaderActing.p50, tick: f.crash.newLeaderActing.max, color: OURS, text: `${fmt(f.crash.newLeaderActing.p50, 0)} / ${fmt(f.crash.newLeaderActing.max, 0)}` },
        { label: 'old key gone (etcd)', value: f.crash.handoverSeenInEtcd.p50, tick: f.crash.handoverSeenInEtcd.max, color: BOUND, text: `${fmt(f.crash.handoverSeenInEtcd.p50, 0)} / ${fmt(f.crash.handoverSeenInEtcd.max, 0)}` },
      ],
      marker: { value: f.crash.targetMs, label: `target TTL + 1 s` },
    });
  }
  const l = s.leaderOnly;
  if (l) {
    panels.push({
      title: '6. @LeaderOnly overhead per call (ns)',
      bars: [
        { label: 'sync method', value: l.overheadNs.syncLeader, color: OURS, text: `${fmt(l.overheadNs.syncLeader, 0)} ns` },
        { label: 'async method', value: l.overheadNs.asyncLeader, color: OURS, text: `${fmt(l.overheadNs.asyncLeader, 0)} ns` },
      ],
      marker: { value: 5000, label: 'target 5 us' },
    });
  }
  const cols = 2;
  const pw = 470;
  const ph = 180;
  const gap = 12;
  const header = 56;
  const rows = Math.ceil(panels.length / cols);
  const width = cols * pw + (cols + 1) * gap;
  const height = header + rows * (ph + gap) + 10;
  const m = r.machine;
  const body = panels.map((p, i) => drawPanel(p, gap + (i % cols) * (pw + gap), header + Math.floor(i / cols) * (ph + gap), pw, ph));
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" viewBox="0 0 ${width} ${height}" font-family="Helvetica, Arial, sans-serif">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="${gap}" y="22" font-size="16" font-weight="700">nest-etcd-coordination benchmark${r.quick ? ' (QUICK smoke run)' : ''}</text>`,
    `<text x="${gap}" y="42" font-size="11" fill="#555">${esc(`${m.cpuModel}, ${m.cores} cores, ${m.memoryGiB} GiB; Node ${m.node}; etcd ${m.etcd}, data on ${m.etcdDataFs}; ${r.generatedAt.slice(0, 10)}; blue = this library, orange = alternative, grey = etcd bound`)}</text>`,
    ...body,
    '</svg>',
    '',
  ].join('\n');
}

// ------------------------------------------------------------------- readme

const START = '<!-- bench:figures:start (generated by npm run bench; edit outside these markers) -->';
const END = '<!-- bench:figures:end -->';

export function renderReadmeBlock(r: BenchResults): string {
  const s = r.sections;
  const lines = [START, '', ...machineLines(r), '', ...renderTargetsTable(r), ''];
  const u = s.uncontended;
  const c = s.contended;
  if (u && c) {
    lines.push(row(['Figure', 'LockService', 'Alternative', 'Ratio']), row(['---', '---:', '---:', '---:']));
    lines.push(row(['Uncontended acquire + release, p50 / p99', `${ms(u.ours.cycle.p50)} / ${ms(u.ours.cycle.p99)}`, `etcd3 Lock ${ms(u.etcd3Lock.cycle.p50)} / ${ms(u.etcd3Lock.cycle.p99)}`, `etcd3 / ours = ${fmt(u.ratios.etcd3LockOverOursP50)}x`]));
    lines.push(row(['Same, vs two raw writes (bound)', ms(u.ours.cycle.p50), `bound ${ms(u.twoWriteBound.cycle.p50)}`, `ours / bound = ${fmt(u.ratios.oursOverBoundP50)}x`]));
    lines.push(row(['8 processes on one lock: acquisitions/s', fmt(c.ours.throughputPerSec, 0), `etcd3 + retry loop ${fmt(c.etcd3Lock.throughputPerSec, 0)}`, `ours / etcd3 = ${fmt(c.ratios.throughputOursOverEtcd3)}x`]));
    lines.push(row(['Handoff p50 / p99', `${ms(c.ours.handoff.p50)} / ${ms(c.ours.handoff.p99)}`, `${ms(c.etcd3Lock.handoff.p50)} / ${ms(c.etcd3Lock.handoff.p99)}`, `etcd3 / ours = ${fmt(c.ratios.handoffP50Etcd3OverOurs)}x`]));
    lines.push(row(['etcd requests per acquisition (8 processes)', fmt(c.ours.etcdRequestsPerAcquisition), fmt(c.etcd3Lock.etcdRequestsPerAcquisition), '']));
    lines.push(row(['Acquisitions per process, min-max (fairness)', `${Math.min(...c.ours.perWorker)}-${Math.max(...c.ours.perWorker)}`, `${Math.min(...c.etcd3Lock.perWorker)}-${Math.max(...c.etcd3Lock.perWorker)}`, '']));
    const h = s.herd;
    if (h) {
      const a = h.ours.at(-1)!;
      const b = h.naivePrefixWatch.at(-1)!;
      lines.push(row([`Watch events per handoff, ${a.waiters} waiters`, fmt(a.watchEventsPerHandoff), `prefix watch ${fmt(b.watchEventsPerHandoff)}`, '']));
    }
    if (s.scale) lines.push(row([`Leases / watches for ${s.scale.ours.locks} held locks (etcd3: ${s.scale.etcd3Lock.locks})`, `${s.scale.ours.leases} / ${s.scale.ours.watches}`, `etcd3 Lock ${s.scale.etcd3Lock.leases} / ${s.scale.etcd3Lock.watches}`, '']));
    const f = s.failover;
    if (f) {
      lines.push(row(['Graceful failover (app.close -> new leader acting), p50 / max', `${ms(f.graceful.newLeaderActing.p50)} / ${ms(f.graceful.newLeaderActing.max)}`, `raw etcd3 chain ${ms(f.graceful.rawChain.p50)}`, `${fmt(f.graceful.p50OverBound)}x`]));
      lines.push(row([`Crash failover (SIGKILL, TTL ${f.sessionTtlSeconds} s), p50 / max`, `${ms(f.crash.newLeaderActing.p50)} / ${ms(f.crash.newLeaderActing.max)}`, `target ${ms(f.crash.targetMs)}`, '']));
    }
    const l = s.leaderOnly;
    if (l) lines.push(row(['@LeaderOnly overhead per call (sync / async)', `${fmt(l.overheadNs.syncLeader, 0)} ns / ${fmt(l.overheadNs.asyncLeader, 0)} ns`, 'target 5,000 ns', '']));
    lines.push('');
  }
  lines.push(...issue16ReadmeLines(r));
  lines.push('Full tables: [results.md](results.md); raw figures: [results.json](results.json); chart: [chart.svg](chart.svg).', '', END);
  return lines.join('\n');
}

function updateReadme(file: string, r: BenchResults): void {
  const block = renderReadmeBlock(r);
  if (!existsSync(file)) {
    writeFileSync(file, `# Benchmarks\n\n${block}\n`);
    return;
  }
  const text = readFileSync(file, 'utf8');
  const a = text.indexOf(START);
  const b = text.indexOf(END);
  if (a < 0 || b < a) {
    writeFileSync(file, `${text.trimEnd()}\n\n${block}\n`);
    return;
  }
  writeFileSync(file, `${text.slice(0, a)}${block}${text.slice(b + END.length)}`);
}

export function writeReports(r: BenchResults, outDir: string): void {
  r.targets = evaluateTargets(r);
  writeFileSync(path.join(outDir, 'results.json'), `${JSON.stringify(r, null, 2)}\n`);
  writeFileSync(path.join(outDir, 'results.md'), renderMarkdown(r));
  writeFileSync(path.join(outDir, 'chart.svg'), renderSvg(r));
  updateReadme(path.join(outDir, 'README.md'), r);
}
