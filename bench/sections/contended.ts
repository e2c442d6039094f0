// 2. Contended: 2, 4 and 8 app instances (separate OS processes, one etcd session each) on one lock,
// against etcd3's Lock with a retry loop and etcd's own Go concurrency.Mutex; plus 8 instances
// packed into 2 processes (same contention, a quarter of the processes: CPU oversubscription).
import { Etcd3 } from 'etcd3';
import { spawnNodeScript, type JsonMessage, type NodeProcess } from '../../test/harness/processes.js';
import { ETCD3_RETRY, msBetween, nowNs, sleep } from '../common.js';
import type { BenchContext, References } from '../context.js';
import { startYardstick, type GoPeer } from '../go.js';
import { counterDelta, etcdCounters } from '../metrics.js';
import { ratio } from '../stats.js';
import { watchSync, type WatchSyncResult } from './watch-sync.js';
import { analyse, type ContendedPhase, type Hold, type RawPhase } from './contended-analysis.js';

export type { ContendedPhase } from './contended-analysis.js';
type Impl = 'ours' | 'etcd3' | 'go';

export interface ContendedConfigResult {
  processes: number;
  appsPerProcess: number;
  ours: ContendedPhase;
  etcd3Lock?: ContendedPhase;
  go?: ContendedPhase;
}

export interface ContendedResult {
  method: string;
  /** The headline configuration (8 processes): kept at the top level as before. */
  workers: number;
  windowSeconds: number;
  ours: ContendedPhase;
  etcd3Lock: ContendedPhase;
  go?: ContendedPhase;
  goSkipped?: string;
  ratios: {
    throughputOursOverEtcd3: number;
    handoffP50Etcd3OverOurs: number;
    /** Against the hot-loop write of section 1 (idle machine). */
    handoffP50OverWriteP50: number;
    /** Against the write probe during the same phase (same load). */
    handoffP50OverWriteUnderLoadP50: number;
    handoffP99OverP50: number;
    throughputOursOverGo?: number;
    throughputEtcd3OverGo?: number;
    handoffP50OursOverGo?: number;
  };
  /** Every configuration, 8 processes included. */
  configs: ContendedConfigResult[];
  /** Delivery of a DELETE to a watch that started at a past revision (etcd's 100 ms sync loop). */
  watchSync?: WatchSyncResult;
}

interface Participant {
  send(message: JsonMessage): void;
  waitForMessage(type: string, timeoutMs?: number): Promise<JsonMessage>;
}

interface Config {
  processes: number;
  appsPerProcess: number;
  impls: Impl[];
  rounds: number;
  durationMs: number;
}

async function stopAll(nodes: NodeProcess[], gos: GoPeer[]): Promise<void> {
  await Promise.all([
    ...nodes.map(async (w) => {
      if (!w.running) return;
      try {
        w.send({ type: 'stop' });
        await w.waitForMessage('stopped', 15_000);
      } catch {
        // fall through to the kill
      }
      await w.kill('SIGKILL');
    }),
    ...gos.map((g) => g.close()),
  ]);
}

async function runConfig(ctx: BenchContext, config: Config): Promise<ContendedConfigResult> {
  const warmupMs = ctx.quick ? 300 : 1_000;
  const nodes: NodeProcess[] = [];
  const gos: GoPeer[] = [];
  const label = `${config.processes} process(es) x ${config.appsPerProcess} app(s)`;
  try {
    for (let i = 0; i < config.processes; i++) {
      nodes.push(spawnNodeScript('bench/contend-worker.js', { args: [ctx.etcd.endpoint, `c${i}`, String(config.appsPerProcess)], name: `contend-${i}` }));
    }
    await Promise.all(nodes.map((w) => w.waitForMessage('ready', 120_000)));
    if (config.impls.includes('go') && ctx.go.binary) {
      for (let i = 0; i < config.processes; i++) gos.push(await startYardstick(ctx.go.binary, ctx.etcd.endpoint, `go-contend-${i}`));
    }
    const participants = (impl: Impl): Participant[] => (impl === 'go' ? gos : nodes);
    const workerCount = config.processes * config.appsPerProcess;

    const runPhase = async (impl: Impl): Promise<RawPhase> => {
      const before = await etcdCounters(ctx.etcd.clientUrl);
      const startNs = nowNs() + 300_000_000n;
      const endNs = startNs + BigInt(config.durationMs) * 1_000_000n;
      const lock = `contended-${impl}-${config.processes}x${config.appsPerProcess}`;
      const who = participants(impl);
      for (const w of who) {
        w.send(impl === 'go'
          ? { type: 'contend', name: lock, startNs: startNs.toString(), endNs: endNs.toString() }
          : { type: 'run', impl, lock, startNs: startNs.toString(), endNs: endNs.toString() });
      }
      // The reference write, measured under the load the handoffs see.
      const probe = new Etcd3({ hosts: ctx.etcd.endpoint });
      const probeMs: number[] = [];
      let probePuts = 0;
      const probing = (async () => {
        await probe.put('contended-probe').value('');
        probePuts++;
        while (nowNs() < endNs) {
          const t0 = nowNs();
          await probe.put('contended-probe').value(String(t0));
          probePuts++;
          if (t0 >= startNs + BigInt(warmupMs) * 1_000_000n) probeMs.push(msBetween(t0, nowNs()));
          await sleep(20);
        }
      })().finally(() => probe.close());
      const replies = await Promise.all(who.map((w) => w.waitForMessage('result', config.durationMs + 90_000)));
      await probing;
      const after = await etcdCounters(ctx.etcd.clientUrl);
      const holds: Hold[] = [];
      replies.forEach((reply, proc) => {
        for (const h of reply.holds as string[][]) {
          holds.push({
            worker: proc * (impl === 'go' ? 1 : config.appsPerProcess) + Number(h[5] ?? 0),
            acquired: BigInt(h[0]!),
            releaseStart: BigInt(h[1]!),
            releaseDone: BigInt(h[2]!),
            token: h[3] ? BigInt(h[3]) : undefined,
            attempts: Number(h[4]),
            woke: h[6] ? BigInt(h[6]) : undefined,
          });
        }
      });
      const delta = counterDelta(before, after);
      // The probe's puts are the runner's, not the lock's.
      delta.unaryTotal -= probePuts;
      delta.unary.Put = (delta.unary.Put ?? 0) - probePuts;
      if (delta.unary.Put === 0) delete delta.unary.Put;
      const raw: RawPhase = {
        impl,
        holds,
        windowStart: startNs + BigInt(warmupMs) * 1_000_000n,
        windowEnd: endNs,
        workers: impl === 'go' ? config.processes : workerCount,
        unaryTotal: delta.unaryTotal,
        unary: delta.unary,
        watchStreamsOpened: delta.watchStreamsOpened,
        failed: replies.reduce((a, r) => a + Number(r.failedAttempts ?? 0), 0),
        disconnects: replies.reduce((a, r) => a + Number(r.watchDisconnects ?? 0), 0),
        probeMs,
        workerCpuMs: replies.reduce((a, r) => a + Number(r.cpuMs ?? 0), 0),
        eventLoopDelay: replies.map((r) => r.eventLoopDelay as { p50: number; p99: number; max: number } | undefined).filter((x) => x !== undefined),
      };
      return raw;
    };

    // Alternate the implementations so a change in the machine's load hits all of them.
    const raws: RawPhase[] = [];
    const impls = config.impls.filter((i) => i !== 'go' || gos.length > 0);
    for (let r = 0; r < config.rounds; r++) {
      for (const impl of impls) {
        const raw = await runPhase(impl);
        raws.push(raw);
        const a = analyse([raw]);
        ctx.log(`${label}, ${impl}: ${a.throughputPerSec}/s, handoff p50 ${a.handoff.p50} p99 ${a.handoff.p99} ms`);
      }
    }
    const of = (impl: Impl) => (raws.some((r) => r.impl === impl) ? analyse(raws.filter((r) => r.impl === impl)) : undefined);
    return { processes: config.processes, appsPerProcess: config.appsPerProcess, ours: of('ours')!, etcd3Lock: of('etcd3'), go: of('go') };
  } finally {
    await stopAll(nodes, gos);
  }
}

export async function contended(ctx: BenchContext, refs: References | undefined): Promise<ContendedResult> {
  const quick = ctx.quick;
  const all: Impl[] = ['ours', 'etcd3', 'go'];
  const plan: Config[] = [
    { processes: 2, appsPerProcess: 1, impls: all, rounds: 1, durationMs: quick ? 1_500 : 4_000 },
    { processes: 4, appsPerProcess: 1, impls: all, rounds: 1, durationMs: quick ? 1_500 : 4_000 },
    { processes: 8, appsPerProcess: 1, impls: all, rounds: quick ? 1 : 2, durationMs: quick ? 2_000 : 6_000 },
    // The same 8 contenders in 2 processes: as many sessions and keys, a quarter of the processes.
    { processes: 2, appsPerProcess: 4, impls: ['ours'], rounds: 1, durationMs: quick ? 2_000 : 6_000 },
  ];
  const configs: ContendedConfigResult[] = [];
  for (const config of plan) configs.push(await runConfig(ctx, config));
  const sync = await watchSync(ctx);
  ctx.log(`watch DELETE delivery, synced p50 ${sync.synced.p50} ms, unsynced (start revision in the past) p50 ${sync.unsynced.p50} max ${sync.unsynced.max} ms`);
  const head = configs.find((c) => c.processes === 8 && c.appsPerProcess === 1)!;
  const ours = head.ours;
  const etcd3Lock = head.etcd3Lock!;
  const go = head.go;
  const headPlan = plan[2]!;
  return {
    method:
      'N worker processes (N = 2, 4, 8), each a Nest app with its own etcd session (ours) and its own etcd3 client (etcd3Lock), ' +
      "and N Go processes with etcd's own concurrency.Mutex (one session each, go), loop on one lock; the implementations " +
      `alternate (8 processes: ${headPlan.rounds} rounds of ${headPlan.durationMs / 1000} s each; 2 and 4: one round of ` +
      `${plan[0]!.durationMs / 1000} s; the first ${quick ? 300 : 1000} ms of each discarded): acquire, record, release at once ` +
      '(empty critical section). Packed: the same 8 Nest apps, 4 in each of 2 processes. ' +
      'Holds from all processes are merged by acquisition time (CLOCK_MONOTONIC, shared by Node and Go processes); ' +
      'handoff = previous holder starts release -> next holder has the lock, split at the successor process\'s last watch ' +
      'response before it had the lock (releaseToWake: delete + watch delivery + wake-up; wakeToAcquired: the successor\'s ' +
      'check). Event-loop delay: perf_hooks.monitorEventLoopDelay (5 ms resolution, subtracted) in every Node worker. ' +
      `etcd3Lock retry loop: on EtcdLockFailedError sleep random(0, min(${ETCD3_RETRY.capMs}, ${ETCD3_RETRY.baseMs} * 2^attempt)) ms and retry. ` +
      "etcd requests per acquisition from etcd's grpc_server_handled_total (unary calls), watch streams opened from " +
      'grpc_server_started_total (Watch). writeUnderLoad: the runner puts a key every 20 ms during the phase.',
    workers: 8,
    windowSeconds: ours.windowSeconds,
    ours,
    etcd3Lock,
    go,
    goSkipped: ctx.go.unavailable,
    ratios: {
      throughputOursOverEtcd3: ratio(ours.throughputPerSec, etcd3Lock.throughputPerSec),
      handoffP50Etcd3OverOurs: ratio(etcd3Lock.handoff.p50, ours.handoff.p50),
      handoffP50OverWriteP50: refs ? ratio(ours.handoff.p50, refs.writeP50) : Number.NaN,
      handoffP50OverWriteUnderLoadP50: ratio(ours.handoff.p50, ours.writeUnderLoad.p50),
      handoffP99OverP50: ratio(ours.handoff.p99, ours.handoff.p50),
      ...(go
        ? {
            throughputOursOverGo: ratio(ours.throughputPerSec, go.throughputPerSec),
            throughputEtcd3OverGo: ratio(etcd3Lock.throughputPerSec, go.throughputPerSec),
            handoffP50OursOverGo: ratio(ours.handoff.p50, go.handoff.p50),
          }
        : {}),
    },
    configs,
    watchSync: sync,
  };
}

