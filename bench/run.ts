// `npm run bench` (through scripts/bench.mjs): starts its own etcd and measures every
// section in one run, then writes docs/bench/results.json, results.md, chart.svg and
// the figures block of docs/bench/README.md.
//   node .cache/bench-build/bench/run.js [--out docs/bench] [--quick] [--report-only]
// Env: BENCH_QUICK=1 (small samples, a smoke run), BENCH_ETCD_DATA=tmpfs|disk (default tmpfs
// when /dev/shm exists), BENCH_SECTIONS=1,2,... (run only these; the others are omitted).
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { resolveEtcdBinaries, startEtcd, type EtcdServer } from '../test/harness/etcd.js';
import { nowNs, msBetween } from './common.js';
import type { BenchContext, References } from './context.js';
import { cpuBusyPercent, cpuTimes, describeCode, describeMachine } from './machine.js';
import { prepareYardstick } from './go.js';
import { writeReports, type BenchResults } from './report.js';
import { uncontended } from './sections/uncontended.js';
import { contended } from './sections/contended.js';
import { herd } from './sections/herd.js';
import { scale } from './sections/scale.js';
import { failover } from './sections/failover.js';
import { leaderOnly } from './sections/leader-only.js';
import { profile } from './sections/profile.js';
import { shardsSection } from './sections/shards.js';

const args = process.argv.slice(2);
const flag = (name: string) => args.includes(name);
const option = (name: string) => {
  const i = args.indexOf(name);
  return i >= 0 ? args[i + 1] : undefined;
};
const root = process.cwd();
const outDir = path.resolve(root, option('--out') ?? path.join('docs', 'bench'));

function log(message: string): void {
  process.stdout.write(`bench: ${message}\n`);
}

async function main(): Promise<number> {
  if (flag('--report-only')) {
    const results = JSON.parse(readFileSync(path.join(outDir, 'results.json'), 'utf8')) as BenchResults;
    writeReports(results, outDir);
    log(`re-rendered ${path.relative(root, outDir)} from results.json`);
    return 0;
  }
  const quick = flag('--quick') || process.env.BENCH_QUICK === '1';
  const wanted = new Set((process.env.BENCH_SECTIONS ?? '1,2,3,4,5,6,7,8').split(',').map((s) => s.trim()));
  const dataKind = process.env.BENCH_ETCD_DATA ?? (existsSync('/dev/shm') ? 'tmpfs' : 'disk');
  if (dataKind !== 'tmpfs' && dataKind !== 'disk') throw new Error(`BENCH_ETCD_DATA must be tmpfs or disk, got ${dataKind}`);
  // The harness puts etcd's data dir under os.tmpdir(), which follows TMPDIR.
  let tmpParent: string | undefined;
  if (dataKind === 'tmpfs') {
    tmpParent = mkdtempSync(path.join('/dev/shm', 'nest-etcd-bench-'));
    process.env.TMPDIR = tmpParent;
  }

  const started = nowNs();
  const binaries = resolveEtcdBinaries();
  let etcd: EtcdServer | undefined;
  const results: BenchResults = {
    schema: 1,
    generatedAt: new Date().toISOString(),
    quick,
    durationSeconds: 0,
    machine: undefined as unknown as BenchResults['machine'],
    code: describeCode(root),
    experiment: process.env.BENCH_EXPERIMENT,
    sections: {},
    sectionLoad: {},
    errors: {},
  };
  try {
    etcd = await startEtcd({ name: 'bench' });
    results.machine = describeMachine(binaries.etcd, etcd.dataDir);
    const m = results.machine;
    log(`etcd ${m.etcd} at ${etcd.endpoint}, data on ${m.etcdDataFs} (${m.etcdDataDir}); ${m.cpuModel}, ${m.cores} cores; load ${m.loadAverageAtStart.join(' ')}`);
    // The Go yardstick (sections 1, 2 and 5 run it next to ours), built once and cached.
    const go = ['1', '2', '5'].some((id) => wanted.has(id)) ? await prepareYardstick(root) : { unavailable: 'no section that uses it was selected' };
    results.go = go.binary ? { available: true, goVersion: go.goVersion } : { available: false, reason: go.unavailable };
    log(go.binary ? `Go yardstick: ${path.relative(root, go.binary)} (${go.goVersion})` : `Go yardstick SKIPPED: ${go.unavailable}`);
    const ctx: BenchContext = { etcd, quick, log, go };
    let refs: References | undefined;
    const section = async <T>(id: string, title: string, run: () => Promise<T>): Promise<T | undefined> => {
      if (!wanted.has(id)) return undefined;
      const t0 = nowNs();
      const load = os.loadavg()[0]!;
      const cpu0 = cpuTimes();
      log(`[${id}/8] ${title} (load ${load.toFixed(2)})`);
      try {
        const value = await run();
        const seconds = msBetween(t0, nowNs()) / 1000;
        results.sectionLoad[id] = { seconds: Math.round(seconds * 10) / 10, loadAtStart: Math.round(load * 100) / 100, loadAtEnd: Math.round(os.loadavg()[0]! * 100) / 100, cpuBusyPercent: cpuBusyPercent(cpu0, cpuTimes()) };
        log(`  done in ${seconds.toFixed(1)} s (machine CPU busy ${results.sectionLoad[id].cpuBusyPercent ?? '?'} %)`);
        return value;
      } catch (err) {
        const message = err instanceof Error ? err.stack ?? err.message : String(err);
        results.errors[id] = message;
        log(`  FAILED: ${message}`);
        return undefined;
      }
    };
    const sub = (prefix: string): BenchContext => ({ ...ctx, log: (msg) => log(`  ${prefix}${msg}`) });

    const s1 = await section('1', 'uncontended acquire + release', () => uncontended(sub('')));
    if (s1) {
      results.sections.uncontended = s1.result;
      refs = s1.refs;
      results.sections.reference = refs;
    }
    const s2 = await section('2', 'contended: 2, 4 and 8 processes on one lock', () => contended(sub(''), refs));
    if (s2) results.sections.contended = s2;
    const s3 = await section('3', 'herd effect: watch events per handoff (10, 100, 1,000 waiters)', () => herd(sub('')));
    if (s3) results.sections.herd = s3;
    const s4 = await section('4', 'scale: 1,000 and 10,000 locks held by one process', () => scale(sub('')));
    if (s4) results.sections.scale = s4;
    const s5 = await section('5', 'leader failover: graceful and crash', () => failover(sub(''), refs));
    if (s5) results.sections.failover = s5;
    const s6 = await section('6', '@LeaderOnly overhead per call', () => leaderOnly(sub('')));
    if (s6) results.sections.leaderOnly = s6;
    const s7 = await section('7', 'uncontended cycle: CPU per call and CPU profile', () => profile(sub('')));
    if (s7) results.sections.profile = s7;
    const s8 = await section('8', 'shards: 100 members x 1,024 shards', () => shardsSection(sub('')));
    if (s8) results.sections.shards = s8;
  } finally {
    await etcd?.stop();
    if (tmpParent) rmSync(tmpParent, { recursive: true, force: true });
  }
  results.durationSeconds = Math.round(msBetween(started, nowNs()) / 100) / 10;
  if (results.machine) results.machine.loadAverageAtEnd = os.loadavg().map((v) => Math.round(v * 100) / 100);

  mkdirSync(outDir, { recursive: true });
  // Every run is also kept under .cache/bench-runs for comparing runs (noise).
  const runsDir = path.join(root, '.cache', 'bench-runs');
  mkdirSync(runsDir, { recursive: true });
  writeReports(results, outDir);
  writeFileSync(path.join(runsDir, `${results.generatedAt.replace(/[:.]/g, '-')}.json`), `${JSON.stringify(results, null, 2)}\n`);
  log(`wrote ${path.relative(root, outDir)}/results.json, results.md, chart.svg (${results.durationSeconds} s in all)`);
  const failed = Object.keys(results.errors);
  if (failed.length > 0) log(`sections that failed: ${failed.join(', ')}`);
  return failed.length > 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`bench: ${err instanceof Error ? err.stack ?? err.message : String(err)}\n`);
    process.exit(1);
  },
);
