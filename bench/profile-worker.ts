// Benchmark child for section 7: per-call cost of the uncontended cycle.
//   node profile-worker.js <endpoint> <cycles> <profileDir>
// Measures, interleaved in blocks, the wall time and the CPU time (process.cpuUsage) per
// acquire + release of: LockService; the same two transactions sent through the library's own
// etcd3 client (same channel options, retry policy, deadline); the same without a deadline;
// the same through an etcd3 client with default options. Then it CPU-profiles N cycles of
// LockService and N of the raw transactions (inspector Profiler, sampling every 50 us) and
// sends the summaries; the .cpuprofile files are kept in <profileDir> for a closer look.
import 'reflect-metadata';
import { writeFileSync, mkdirSync } from 'node:fs';
import { Session } from 'node:inspector/promises';
import path from 'node:path';
import { Etcd3 } from 'etcd3';
import { LockService } from '../lib/index.js';
import { ETCD_CLIENT_HOLDER } from '../lib/coordination.constants.js';
import type { EtcdClientHolder } from '../lib/etcd/etcd-client.js';
import { emit } from '../test/harness/child.js';
import { createBenchApp, nowNs } from './common.js';
import { summarizeProfile, type CpuProfile } from './profile-summary.js';
import { median, round } from './stats.js';

const [endpoint, cyclesArg, profileDir] = process.argv.slice(2);
const cycles = Number(cyclesArg ?? 1000);

type Cycle = () => Promise<void>;

function rawCycle(client: Etcd3, prefix: string, leaseId: string, withDeadline: boolean): Cycle {
  const identity = Buffer.from('bench-profile');
  const rawPrefix = Buffer.from(`${prefix}cycle/`);
  const rawEnd = Buffer.from(`${prefix}cycle0`);
  const key = Buffer.concat([rawPrefix, Buffer.from(BigInt(leaseId).toString(16))]);
  const opts = () => (withDeadline ? { deadline: new Date(Date.now() + 5_000) } : undefined);
  return async () => {
    const claim = await client.kv.txn({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: 0 }],
      success: [
        { request_put: { key, value: identity, lease: leaseId } },
        { request_range: { key: rawPrefix, range_end: rawEnd, sort_order: 'Descend', sort_target: 'Create', limit: 3, keys_only: true } },
      ],
      failure: [{ request_range: { key } }],
    }, opts());
    await client.kv.txn({
      compare: [{ key, target: 'Create', result: 'Equal', create_revision: claim.header.revision }],
      success: [{ request_delete_range: { key } }],
      failure: [],
    }, opts());
  };
}

async function main(): Promise<void> {
  const app = await createBenchApp({ hosts: endpoint!, identity: 'bench-profile', namespace: 'prof/', election: false });
  const locks = app.get(LockService);
  const ourClient = app.get<EtcdClientHolder>(ETCD_CLIENT_HOLDER).client;
  const defaultClient = new Etcd3({ hosts: endpoint! });
  const leaseA = ourClient.lease(60);
  const leaseB = defaultClient.lease(60);
  const idA = await leaseA.grant();
  const idB = await leaseB.grant();
  const variants: Record<string, Cycle> = {
    ours: async () => {
      const handle = await locks.acquire('cycle');
      await handle.release();
    },
    rawSameTxnsOurClient: rawCycle(ourClient, 'prof-raw-a/', idA, true),
    rawSameTxnsOurClientNoDeadline: rawCycle(ourClient, 'prof-raw-b/', idA, false),
    rawSameTxnsDefaultClient: rawCycle(defaultClient, 'prof-raw-c/', idB, true),
  };
  const names = Object.keys(variants);
  for (const n of names) for (let i = 0; i < 100; i++) await variants[n]!();

  const block = 50;
  const rounds = Math.max(2, Math.round(cycles / block));
  const wall: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  const cpu: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
  for (let r = 0; r < rounds; r++) {
    for (let k = 0; k < names.length; k++) {
      const n = names[(r + k) % names.length]!;
      const c0 = process.cpuUsage();
      for (let i = 0; i < block; i++) {
        const t0 = nowNs();
        await variants[n]!();
        wall[n]!.push(Number(nowNs() - t0) / 1e6);
      }
      const c = process.cpuUsage(c0);
      cpu[n]!.push((c.user + c.system) / block);
    }
  }

  mkdirSync(profileDir!, { recursive: true });
  const session = new Session();
  session.connect();
  await session.post('Profiler.enable');
  await session.post('Profiler.setSamplingInterval', { interval: 50 });
  const profiles: Record<string, unknown> = {};
  for (const n of ['ours', 'rawSameTxnsOurClient']) {
    await session.post('Profiler.start');
    for (let i = 0; i < cycles; i++) await variants[n]!();
    const { profile } = (await session.post('Profiler.stop')) as unknown as { profile: CpuProfile };
    writeFileSync(path.join(profileDir!, `${n}.cpuprofile`), JSON.stringify(profile));
    profiles[n] = summarizeProfile(profile, cycles);
  }
  session.disconnect();

  await leaseA.revoke().catch(() => undefined);
  await leaseB.revoke().catch(() => undefined);
  defaultClient.close();
  await app.close();
  emit({
    type: 'result',
    samplesPerVariant: rounds * block,
    wallP50Ms: Object.fromEntries(names.map((n) => [n, round(median(wall[n]!), 4)])),
    cpuUsPerCycle: Object.fromEntries(names.map((n) => [n, round(median(cpu[n]!), 1)])),
    profiles,
  });
  process.exit(0);
}

await main();
