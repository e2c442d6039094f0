// The parts of the report added for issue 16 (its targets, the Go yardstick, 2/4/8 processes, the
// handoff tail, the CPU profile, 10,000 locks, the 1,000-waiter chain), kept apart from report.ts.
import type { BenchResults, TargetResult } from './report.js';
import type { ContendedPhase } from './sections/contended.js';
import type { Summary } from './stats.js';

const fmt = (v: number | undefined, digits = 2): string => (v === undefined || !Number.isFinite(v) ? 'n/a' : v.toFixed(digits));
const ms = (v: number | undefined): string => `${fmt(v)} ms`;
const row = (cells: Array<string | number>) => `| ${cells.join(' | ')} |`;

/** Issue 16's targets (the earlier ones stay in report.ts). */
export function issue16Targets(r: BenchResults): TargetResult[] {
  const s = r.sections;
  const out: TargetResult[] = [];
  const add = (id: string, target: string, measured: string | undefined, met: boolean | undefined) =>
    out.push({ id, target, measured: measured ?? 'not measured', met: measured === undefined ? null : (met ?? null) });
  const c = s.contended;
  const fifo = (p: ContendedPhase) => p.mutualExclusionViolations === 0 && (p.fencingOrderViolations ?? 0) === 0;
  add('16.2-throughput', '16.2: 8 processes on one lock reach the etcd3 retry loop\'s acquisitions/s, staying FIFO',
    c && `${fmt(c.ours.throughputPerSec, 1)}/s vs etcd3 ${fmt(c.etcd3Lock.throughputPerSec, 1)}/s (${fmt(c.ratios.throughputOursOverEtcd3)}x); ` +
      `per process ${Math.min(...c.ours.perWorker)}-${Math.max(...c.ours.perWorker)} (etcd3 ${Math.min(...c.etcd3Lock.perWorker)}-${Math.max(...c.etcd3Lock.perWorker)})`,
    c && c.ours.throughputPerSec >= c.etcd3Lock.throughputPerSec && fifo(c.ours));
  add('16.2-tail', '16.2: contended handoff p99 below 10x p50 (8 processes)',
    c && `p99 ${ms(c.ours.handoff.p99)} / p50 ${ms(c.ours.handoff.p50)} = ${fmt(c.ours.handoff.p99 / c.ours.handoff.p50)}x`,
    c && c.ours.handoff.p99 < 10 * c.ours.handoff.p50);
  const u = s.uncontended;
  add('16.3-raw', '16.3: uncontended cycle within 1.05x of the same transactions sent raw through etcd3 (p50)',
    u && `${fmt(u.ratios.oursOverRawSameTxnsP50)}x (${ms(u.ours.cycle.p50)} vs ${ms(u.rawSameTxns.cycle.p50)})`,
    u && u.ratios.oursOverRawSameTxnsP50 <= 1.05);
  const f = s.failover;
  add('16.4-graceful', '16.4: graceful failover within 1.5x the raw delete -> watch -> read chain (p50)',
    f && `${fmt(f.graceful.p50OverBound)}x (${ms(f.graceful.newLeaderActing.p50)} vs ${ms(f.graceful.boundMs)})`,
    f && f.graceful.p50OverBound <= 1.5);
  return out;
}

/** Go yardstick figures (informational: the issue sets no target for them). */
export function goRows(r: BenchResults): string[] {
  const s = r.sections;
  const lines = [row(['Measure (p50)', 'ours', "etcd's Go recipe", 'ours / Go', 'raw etcd3 / Go']), row(['---', '---:', '---:', '---:', '---:'])];
  const u = s.uncontended;
  if (u?.go && u.goRatios && u.rawGoRequests) {
    lines.push(row(['Uncontended lock cycle', ms(u.ours.cycle.p50), ms(u.go.cycle.p50), `${fmt(u.goRatios.oursOverGoP50)}x`,
      `${fmt(u.goRatios.rawGoRequestsOverGoP50)}x (Go's 2 requests), ${fmt(u.goRatios.rawSameTxnsOverGoP50)}x (our 2 txns)`]));
  }
  const c = s.contended;
  if (c?.go) {
    lines.push(row(['8 processes: acquisitions/s', fmt(c.ours.throughputPerSec, 1), fmt(c.go.throughputPerSec, 1), `${fmt(c.ratios.throughputOursOverGo)}x`, `etcd3 Lock ${fmt(c.ratios.throughputEtcd3OverGo)}x`]));
    lines.push(row(['8 processes: handoff p50 / p99', `${ms(c.ours.handoff.p50)} / ${ms(c.ours.handoff.p99)}`, `${ms(c.go.handoff.p50)} / ${ms(c.go.handoff.p99)}`, `${fmt(c.ratios.handoffP50OursOverGo)}x`, '']));
  }
  const f = s.failover;
  if (f?.go) {
    lines.push(row(['Graceful failover', `${ms(f.graceful.newLeaderActing.p50)} (from resign request ${ms(f.go.oursFromResignSent.p50)})`, ms(f.go.resignToElected.p50),
      `${fmt(f.go.oursOverGoP50)}x (${fmt(f.go.oursFromResignOverGoP50)}x)`, `raw chain ${fmt(f.go.rawChainOverGoP50)}x`]));
  }
  if (lines.length === 2) return [`Go yardstick not run: ${r.go?.reason ?? u?.goSkipped ?? 'unknown reason'}`];
  return lines;
}

const sumCell = (x: Summary | undefined) => (x ? `${fmt(x.p50)} / ${fmt(x.p99)}` : '');

export function renderIssue16Markdown(r: BenchResults): string[] {
  const s = r.sections;
  const out: string[] = ['## Go yardstick (etcd\'s own concurrency.Mutex / Election, same etcd, same run)', '',
    r.go?.available ? `Go ${r.go.goVersion}; clientv3 3.4.23 (Debian golang-etcd-server-dev, GOPATH build).` : `Skipped: ${r.go?.reason ?? 'n/a'}`, '', ...goRows(r), ''];
  const c = s.contended;
  if (c?.configs) {
    out.push('## 2b. Contended at 2, 4 and 8 processes, and 8 apps packed into 2 processes', '',
      row(['Config', 'impl', 'acq/s', 'handoff p50 / p99', 'release -> wake p50 / p99', 'wake -> held p50 / p99', 'tail (> p90): n, mean release->wake / wake->held',
        'event-loop delay p50 / p99 / max', 'worker CPU ms / acq', 'etcd req / acq', 'write under load p50 / p99', 'per worker min-max', 'violations']),
      row(['---', '---', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']));
    for (const k of c.configs) {
      for (const [impl, p] of [['ours', k.ours], ['etcd3 + retry', k.etcd3Lock], ['Go Mutex', k.go]] as const) {
        if (!p) continue;
        const parts = p.handoffParts;
        out.push(row([`${k.processes} x ${k.appsPerProcess}`, impl, fmt(p.throughputPerSec, 1), sumCell(p.handoff), sumCell(parts?.releaseToWake), sumCell(parts?.wakeToAcquired),
          parts ? `${parts.tail.n}: ${fmt(parts.tail.releaseToWakeMeanMs)} / ${fmt(parts.tail.wakeToAcquiredMeanMs)}` : '',
          p.eventLoopDelay ? `${fmt(p.eventLoopDelay.p50)} / ${fmt(p.eventLoopDelay.p99)} / ${fmt(p.eventLoopDelay.max)}` : '',
          fmt(p.workerCpuMsPerAcquisition, 2), fmt(p.etcdRequestsPerAcquisition), sumCell(p.writeUnderLoad),
          `${Math.min(...p.perWorker)}-${Math.max(...p.perWorker)}`, String(p.mutualExclusionViolations + (p.fencingOrderViolations ?? 0))]));
      }
    }
    if (c.watchSync) {
      out.push('', `etcd's unsynced-watcher loop: DELETE -> event at a watch that started at the next revision with no write in between (synced) ` +
        `p50 ${ms(c.watchSync.synced.p50)}, max ${ms(c.watchSync.synced.max)}; after one unrelated write (the watch starts at a past revision: unsynced) ` +
        `p50 ${ms(c.watchSync.unsynced.p50)}, max ${ms(c.watchSync.unsynced.max)} (n = ${c.watchSync.unsynced.n} each). ${c.watchSync.method}`);
    }
    out.push('');
  }
  const h = s.herd?.longChain;
  if (h) {
    out.push(`## 3b. A ${h.waiters}-waiter chain`, '', row(['waiters', 'watch events / handoff (etcd)', 'client count', 'etcd requests / handoff', 'handoff p50 / p99', 'whole chain', 'apps start', 'runner RSS']),
      row(['---:', '---:', '---:', '---:', '---:', '---:', '---:', '---:']),
      row([h.waiters, fmt(h.watchEventsPerHandoff), fmt(h.clientWatchEventsPerHandoff), fmt(h.etcdRequestsPerHandoff), sumCell(h.handoff), ms(h.chainMs), ms(h.appsStartMs), `${h.rssMiB} MiB`]), '');
  }
  const p = s.profile;
  if (p) {
    out.push('## 7. Uncontended cycle: CPU per call and CPU profile', '', row(['Variant', 'wall p50 (ms)', 'CPU per cycle (us)']), row(['---', '---:', '---:']));
    for (const [k, v] of Object.entries(p.wallP50Ms)) out.push(row([k, fmt(v, 3), fmt(p.cpuUsPerCycle[k], 0)]));
    out.push('', `Library CPU per cycle (ours - raw through our client): **${fmt(p.libraryCpuUsPerCycle, 0)} us**; a grpc deadline on both calls: ${fmt(p.deadlineCpuUsPerCycle, 0)} us.`, '');
    for (const [name, prof] of Object.entries(p.profiles)) {
      out.push(`Profile of ${name} (${prof.cycles} cycles, ${prof.busyMs} ms busy of ${prof.profiledMs} ms): self time by origin, us per cycle:`, '',
        row(['origin', 'us / cycle', 'share of busy']), row(['---', '---:', '---:']),
        ...prof.byOrigin.filter((o) => o.origin !== 'idle').map((o) => row([o.origin, fmt(o.usPerCycle, 1), `${fmt(o.share, 1)} %`])), '',
        row(['top self time', 'origin', 'us / cycle']), row(['---', '---', '---:']),
        ...prof.top.map((f) => row([`${f.function} ${f.where}`.replace(/\|/g, '/'), f.origin, fmt(f.selfUsPerCycle, 1)])), '');
      if (prof.topOurs.length) out.push('In lib/: ' + prof.topOurs.map((f) => `${f.function} ${fmt(f.selfUsPerCycle, 1)} us`).join(', '), '');
    }
    out.push(`Method: ${p.method} Profiles: ${p.profileFiles.join(', ')} (not committed; open in Chrome DevTools).`, '');
  }
  return out;
}

/** Extra rows of the README figures block. */
export function issue16ReadmeLines(r: BenchResults): string[] {
  const s = r.sections;
  const lines: string[] = [];
  const c = s.contended;
  if (c?.configs) {
    lines.push(row(['Processes on one lock', 'ours acq/s, handoff p50 / p99', 'etcd3 + retry', "Go's Mutex"]), row(['---', '---:', '---:', '---:']));
    for (const k of c.configs) {
      const cell = (p: ContendedPhase | undefined) => (p ? `${fmt(p.throughputPerSec, 0)}/s, ${fmt(p.handoff.p50, 1)} / ${fmt(p.handoff.p99, 1)} ms` : '');
      lines.push(row([k.appsPerProcess === 1 ? `${k.processes}` : `${k.processes * k.appsPerProcess} apps in ${k.processes} processes`, cell(k.ours), cell(k.etcd3Lock), cell(k.go)]));
    }
    lines.push('');
  }
  lines.push(...goRows(r), '');
  return lines;
}
