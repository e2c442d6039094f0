// Summarises a V8 CPU profile (.cpuprofile, from node --cpu-prof or inspector Profiler.stop):
// self time per function and per origin (our lib/, etcd3, grpc-js, protobufjs, Node core, GC...).
//   node .cache/bench-build/bench/profile-summary.js <file.cpuprofile> [cycles]
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

interface CallFrame {
  functionName: string;
  url: string;
  lineNumber: number;
}
interface ProfileNode {
  id: number;
  callFrame: CallFrame;
}
export interface CpuProfile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
  startTime: number;
  endTime: number;
}

export type Origin = 'ours (lib/)' | 'etcd3' | 'grpc-js' | 'protobufjs' | 'cockatiel' | 'nest/rxjs' | 'other deps' | 'bench harness' | 'node core' | 'gc' | 'vm/native (program)' | 'idle';

export function originOf(frame: CallFrame): Origin {
  const url = frame.url.replace(/\\/g, '/');
  if (frame.functionName === '(garbage collector)') return 'gc';
  if (frame.functionName === '(idle)') return 'idle';
  if (frame.functionName === '(program)' || frame.functionName === '(root)') return 'vm/native (program)';
  if (url.includes('/node_modules/')) {
    const rest = url.slice(url.lastIndexOf('/node_modules/') + 14);
    if (rest.startsWith('etcd3/')) return 'etcd3';
    if (rest.startsWith('@grpc/')) return 'grpc-js';
    if (rest.startsWith('protobufjs/') || rest.startsWith('@protobufjs/') || rest.startsWith('long/')) return 'protobufjs';
    if (rest.startsWith('cockatiel/')) return 'cockatiel';
    if (rest.startsWith('@nestjs/') || rest.startsWith('rxjs/')) return 'nest/rxjs';
    return 'other deps';
  }
  if (/\/lib\/[^/]/.test(url) && !url.startsWith('node:')) return 'ours (lib/)';
  if (/\/(bench|test)\//.test(url)) return 'bench harness';
  return 'node core';
}

export interface FunctionCost {
  function: string;
  where: string;
  origin: Origin;
  selfMs: number;
  /** Self time per cycle, microseconds (when cycles were given). */
  selfUsPerCycle?: number;
}

export interface ProfileSummary {
  /** Wall time the profile covers, ms. */
  profiledMs: number;
  /** Samples that were not idle, ms (CPU on the main thread). */
  busyMs: number;
  cycles?: number;
  byOrigin: Array<{ origin: Origin; selfMs: number; share: number; usPerCycle?: number }>;
  top: FunctionCost[];
  topOurs: FunctionCost[];
}

function shortUrl(url: string): string {
  const i = url.lastIndexOf('/node_modules/');
  if (i >= 0) return url.slice(i + 14);
  const lib = url.search(/\/(lib|bench|test)\//);
  return lib >= 0 ? url.slice(lib + 1) : url.replace(/^file:\/\//, '');
}

export function summarizeProfile(profile: CpuProfile, cycles?: number, topN = 15): ProfileSummary {
  const byId = new Map(profile.nodes.map((n) => [n.id, n]));
  const selfUs = new Map<number, number>();
  for (let i = 0; i < profile.samples.length; i++) {
    // timeDeltas[i] is the time since the previous sample: it belongs to the sample before this one.
    const id = profile.samples[i]!;
    const dt = profile.timeDeltas[i + 1] ?? 0;
    selfUs.set(id, (selfUs.get(id) ?? 0) + Math.max(0, dt));
  }
  const fns = new Map<string, FunctionCost>();
  const origins = new Map<Origin, number>();
  let busyUs = 0;
  for (const [id, us] of selfUs) {
    const frame = byId.get(id)!.callFrame;
    const origin = originOf(frame);
    origins.set(origin, (origins.get(origin) ?? 0) + us);
    if (origin !== 'idle') busyUs += us;
    const where = frame.url ? `${shortUrl(frame.url)}:${frame.lineNumber + 1}` : '';
    const key = `${frame.functionName}@${where}`;
    const f = fns.get(key) ?? { function: frame.functionName || '(anonymous)', where, origin, selfMs: 0 };
    f.selfMs += us / 1000;
    fns.set(key, f);
  }
  const perCycle = (ms: number) => (cycles ? Math.round((ms * 1000 * 10) / cycles) / 10 : undefined);
  const finish = (f: FunctionCost): FunctionCost => ({ ...f, selfMs: Math.round(f.selfMs * 100) / 100, selfUsPerCycle: perCycle(f.selfMs) });
  const sorted = [...fns.values()].filter((f) => f.origin !== 'idle').sort((a, b) => b.selfMs - a.selfMs);
  return {
    profiledMs: Math.round((profile.endTime - profile.startTime) / 100) / 10,
    busyMs: Math.round(busyUs / 100) / 10,
    cycles,
    byOrigin: [...origins.entries()]
      .sort((a, b) => b[1] - a[1])
      .map(([origin, us]) => ({ origin, selfMs: Math.round(us / 100) / 10, share: busyUs > 0 && origin !== 'idle' ? Math.round((us / busyUs) * 1000) / 10 : 0, usPerCycle: perCycle(us / 1000) })),
    top: sorted.slice(0, topN).map(finish),
    topOurs: sorted.filter((f) => f.origin === 'ours (lib/)').slice(0, 10).map(finish),
  };
}

if (process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const [file, cycles] = process.argv.slice(2);
  if (!file) {
    console.error('usage: profile-summary.js <file.cpuprofile> [cycles]');
    process.exit(2);
  }
  const summary = summarizeProfile(JSON.parse(readFileSync(file, 'utf8')) as CpuProfile, cycles ? Number(cycles) : undefined);
  console.log(`profiled ${summary.profiledMs} ms, busy ${summary.busyMs} ms${summary.cycles ? ` over ${summary.cycles} cycles` : ''}`);
  for (const o of summary.byOrigin) console.log(`  ${o.origin.padEnd(22)} ${String(o.selfMs).padStart(9)} ms  ${String(o.share).padStart(5)} %${o.usPerCycle !== undefined ? `  ${o.usPerCycle} us/cycle` : ''}`);
  console.log('top self time:');
  for (const f of summary.top) console.log(`  ${String(f.selfMs).padStart(8)} ms  ${f.origin.padEnd(14)} ${f.function} ${f.where}`);
}
