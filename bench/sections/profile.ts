// 7. Where the uncontended cycle's CPU goes: a child process measures the CPU time per cycle of
// LockService and of the same transactions sent raw (with and without deadline, through our client
// and a default one), then CPU-profiles both (bench/profile-worker.ts, bench/profile-summary.ts).
import path from 'node:path';
import { spawnNodeScript } from '../../test/harness/processes.js';
import type { BenchContext } from '../context.js';
import type { ProfileSummary } from '../profile-summary.js';
import { round } from '../stats.js';

export interface ProfileResult {
  method: string;
  samplesPerVariant: number;
  wallP50Ms: Record<string, number>;
  cpuUsPerCycle: Record<string, number>;
  /** CPU per cycle that is the library's, not the requests': ours - rawSameTxnsOurClient, us. */
  libraryCpuUsPerCycle: number;
  /** What a grpc deadline costs per cycle (2 calls), us of CPU. */
  deadlineCpuUsPerCycle: number;
  profiles: Record<string, ProfileSummary>;
  profileFiles: string[];
}

export async function profile(ctx: BenchContext): Promise<ProfileResult> {
  const cycles = ctx.quick ? 300 : 1500;
  const dir = path.join(process.cwd(), '.cache', 'bench-prof');
  const worker = spawnNodeScript('bench/profile-worker.js', { args: [ctx.etcd.endpoint, String(cycles), dir], name: 'profile' });
  try {
    const r = await worker.waitForMessage('result', 300_000);
    const cpu = r.cpuUsPerCycle as Record<string, number>;
    return {
      method:
        `One child process (one Nest app). Per-cycle wall time (p50) and CPU time (process.cpuUsage, user + system, median of ` +
        `50-cycle blocks) of: ours = LockService acquire + release; rawSameTxnsOurClient = the same two transactions through ` +
        "the library's own etcd3 client (its grpc options, retry policy and a 5 s deadline per call); ...NoDeadline = the same " +
        'without a deadline; rawSameTxnsDefaultClient = through an etcd3 client with default options. Variants interleaved in ' +
        `blocks of 50 (rotating order). Then ${cycles} cycles of ours and of rawSameTxnsOurClient are CPU-profiled ` +
        '(inspector Profiler, 50 us sampling); self time grouped by origin (file path) and the top functions.',
      samplesPerVariant: Number(r.samplesPerVariant),
      wallP50Ms: r.wallP50Ms as Record<string, number>,
      cpuUsPerCycle: cpu,
      libraryCpuUsPerCycle: round((cpu.ours ?? NaN) - (cpu.rawSameTxnsOurClient ?? NaN), 1),
      deadlineCpuUsPerCycle: round((cpu.rawSameTxnsOurClient ?? NaN) - (cpu.rawSameTxnsOurClientNoDeadline ?? NaN), 1),
      profiles: r.profiles as Record<string, ProfileSummary>,
      profileFiles: ['ours', 'rawSameTxnsOurClient'].map((n) => path.relative(process.cwd(), path.join(dir, `${n}.cpuprofile`))),
    };
  } finally {
    await worker.kill('SIGKILL');
  }
}
