// 2. Contended: 8 app instances (separate OS processes, one etcd session each) on one lock.
import { Etcd3 } from 'etcd3';
import { spawnNodeScript, type NodeProcess } from '../../test/harness/processes.js';
import { ETCD3_RETRY, msBetween, nowNs, sleep } from '../common.js';
import type { BenchContext, References } from '../context.js';
import { counterDelta, etcdCounters } from '../metrics.js';
import { ratio, round, summarize, type Summary } from '../stats.js';

interface Hold {
  worker: number;
  acquired: bigint;
  releaseStart: bigint;
  releaseDone: bigint;
  token: bigint | undefined;
  attempts: number;
}

export interface ContendedPhase {
  /** Acquisitions per second inside the measured window. */
  throughputPerSec: number;
  acquisitions: number;
  /** Release start of one holder -> acquisition by the next holder, ms. */
  handoff: Summary;
  /** Acquisitions per worker in the window (fairness). */
  perWorker: number[];
  /** etcd unary requests (all methods) per acquisition, whole phase. */
  etcdRequestsPerAcquisition: number;
  etcdRequestsByMethod: Record<string, number>;
  /** Failed try-lock attempts per acquisition (etcd3 retry loop only). */
  failedAttemptsPerAcquisition?: number;
  /** etcd watch streams opened (grpc_server_started_total, Watch) per acquisition. */
  watchStreamsOpenedPerAcquisition: number;
  /** etcd3 watchers that lost their stream and re-subscribed after a backoff ('disconnected'), all workers. */
  watchDisconnects: number;
  /** A put by the runner every 20 ms during the phase: one etcd write under the same load, ms. */
  writeUnderLoad: Summary;
  /** Holds that started before the previous holder began releasing: must be 0. */
  mutualExclusionViolations: number;
  /** Consecutive holders whose fencing tokens did not increase (ours only): must be 0. */
  fencingOrderViolations?: number;
}

interface RawPhase {
  impl: 'ours' | 'etcd3';
  handoffs: number[];
  inWindow: number;
  windowSeconds: number;
  perWorker: number[];
  holds: number;
  unaryTotal: number;
  unary: Record<string, number>;
  watchStreamsOpened: number;
  failed: number;
  disconnects: number;
  probeMs: number[];
  violations: number;
  tokenViolations: number;
}

export interface ContendedResult {
  method: string;
  workers: number;
  windowSeconds: number;
  ours: ContendedPhase;
  etcd3Lock: ContendedPhase;
  ratios: {
    throughputOursOverEtcd3: number;
    handoffP50Etcd3OverOurs: number;
    /** Against the hot-loop write of section 1 (idle machine). */
    handoffP50OverWriteP50: number;
    /** Against the write probe during the same phase (same load). */
    handoffP50OverWriteUnderLoadP50: number;
  };
}

export async function contended(ctx: BenchContext, refs: References | undefined): Promise<ContendedResult> {
  const count = Number(process.env.BENCH_CONTEND_WORKERS ?? 8);
  const durationMs = ctx.quick ? 2_000 : 8_000;
  const rounds = ctx.quick ? 1 : 2;
  const warmupMs = ctx.quick ? 300 : 1_000;
  const workers: NodeProcess[] = [];
  try {
    for (let i = 0; i < count; i++) {
      workers.push(spawnNodeScript('bench/worker.js', { args: ['contend', ctx.etcd.endpoint, `c${i}`], name: `contend-${i}` }));
    }
    await Promise.all(workers.map((w) => w.waitForMessage('ready', 90_000)));
    ctx.log(`${count} worker processes ready`);

    const runPhase = async (impl: 'ours' | 'etcd3'): Promise<RawPhase> => {
      const before = await etcdCounters(ctx.etcd.clientUrl);
      const startNs = nowNs() + 300_000_000n;
      const endNs = startNs + BigInt(durationMs) * 1_000_000n;
      const lock = impl === 'ours' ? 'contended' : 'contended-etcd3';
      for (const w of workers) w.send({ type: 'run', impl, lock, startNs: startNs.toString(), endNs: endNs.toString() });
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
      const replies = await Promise.all(workers.map((w) => w.waitForMessage('result', durationMs + 60_000)));
      await probing;
      const after = await etcdCounters(ctx.etcd.clientUrl);
      const holds: Hold[] = [];
      let failed = 0;
      let disconnects = 0;
      replies.forEach((reply, worker) => {
        failed += Number(reply.failedAttempts ?? 0);
        disconnects += Number(reply.watchDisconnects ?? 0);
        for (const h of reply.holds as string[][]) {
          holds.push({
            worker,
            acquired: BigInt(h[0]!),
            releaseStart: BigInt(h[1]!),
            releaseDone: BigInt(h[2]!),
            token: h[3] ? BigInt(h[3]) : undefined,
            attempts: Number(h[4]),
          });
        }
      });
      holds.sort((a, b) => (a.acquired < b.acquired ? -1 : a.acquired > b.acquired ? 1 : 0));
      const windowStart = startNs + BigInt(warmupMs) * 1_000_000n;
      const inWindow = holds.filter((h) => h.acquired >= windowStart && h.acquired < endNs);
      const handoffs: number[] = [];
      let violations = 0;
      let tokenViolations = 0;
      for (let i = 1; i < holds.length; i++) {
        const prev = holds[i - 1]!;
        const next = holds[i]!;
        if (next.acquired < prev.releaseStart) violations++;
        if (prev.token !== undefined && next.token !== undefined && next.token <= prev.token) tokenViolations++;
        if (next.acquired >= windowStart && next.acquired < endNs) handoffs.push(msBetween(prev.releaseStart, next.acquired));
      }
      const delta = counterDelta(before, after);
      // The probe's puts are the runner's, not the lock's.
      delta.unaryTotal -= probePuts;
      delta.unary.Put = (delta.unary.Put ?? 0) - probePuts;
      if (delta.unary.Put === 0) delete delta.unary.Put;
      const raw: RawPhase = {
        impl,
        handoffs,
        inWindow: inWindow.length,
        windowSeconds: (durationMs - warmupMs) / 1000,
        perWorker: workers.map((_, i) => inWindow.filter((h) => h.worker === i).length),
        holds: holds.length,
        unaryTotal: delta.unaryTotal,
        unary: delta.unary,
        watchStreamsOpened: delta.watchStreamsOpened,
        failed,
        disconnects,
        probeMs,
        violations,
        tokenViolations,
      };
      ctx.log(`${impl}: ${round(raw.inWindow / raw.windowSeconds, 1)}/s, handoff p50 ${summarize(handoffs).p50} ms`);
      return raw;
    };

    const combine = (raws: RawPhase[]): ContendedPhase => {
      const sum = (f: (r: RawPhase) => number) => raws.reduce((acc, r) => acc + f(r), 0);
      const unary: Record<string, number> = {};
      for (const r of raws) for (const [m, v] of Object.entries(r.unary)) unary[m] = (unary[m] ?? 0) + v;
      const holdsTotal = Math.max(1, sum((r) => r.holds));
      const phase: ContendedPhase = {
        throughputPerSec: round(sum((r) => r.inWindow) / sum((r) => r.windowSeconds), 1),
        acquisitions: sum((r) => r.inWindow),
        handoff: summarize(raws.flatMap((r) => r.handoffs)),
        perWorker: workers.map((_, i) => sum((r) => r.perWorker[i] ?? 0)),
        etcdRequestsPerAcquisition: round(sum((r) => r.unaryTotal) / holdsTotal, 2),
        etcdRequestsByMethod: unary,
        watchStreamsOpenedPerAcquisition: round(sum((r) => r.watchStreamsOpened) / holdsTotal, 2),
        watchDisconnects: sum((r) => r.disconnects),
        writeUnderLoad: summarize(raws.flatMap((r) => r.probeMs)),
        mutualExclusionViolations: sum((r) => r.violations),
      };
      if (raws[0]!.impl === 'ours') phase.fencingOrderViolations = sum((r) => r.tokenViolations);
      else phase.failedAttemptsPerAcquisition = round(sum((r) => r.failed) / holdsTotal, 2);
      return phase;
    };

    // Alternate the implementations so a change in the machine's load hits both.
    const raws: RawPhase[] = [];
    for (let r = 0; r < rounds; r++) {
      raws.push(await runPhase('ours'));
      raws.push(await runPhase('etcd3'));
    }
    const ours = combine(raws.filter((r) => r.impl === 'ours'));
    const etcd3Lock = combine(raws.filter((r) => r.impl === 'etcd3'));
    return {
      method:
        `${count} worker processes, each a Nest app with its own etcd session (ours) and its own etcd3 client (etcd3Lock), ` +
        `loop on one lock in ${rounds} alternating rounds of ${durationMs / 1000} s per implementation (first ${warmupMs} ms of each discarded): ` +
        'acquire, record, release at once (empty critical section). ' +
        'Holds from all processes are merged by acquisition time (CLOCK_MONOTONIC, shared by the processes); ' +
        'handoff = previous holder starts release -> next holder has the lock. ' +
        `etcd3Lock retry loop: on EtcdLockFailedError sleep random(0, min(${ETCD3_RETRY.capMs}, ${ETCD3_RETRY.baseMs} * 2^attempt)) ms and retry. ` +
        "etcd requests per acquisition from etcd's grpc_server_handled_total (unary calls), watch streams opened from " +
        'grpc_server_started_total (Watch). writeUnderLoad: the runner puts a key every 20 ms during the phase.',
      workers: count,
      windowSeconds: (rounds * (durationMs - warmupMs)) / 1000,
      ours,
      etcd3Lock,
      ratios: {
        throughputOursOverEtcd3: ratio(ours.throughputPerSec, etcd3Lock.throughputPerSec),
        handoffP50Etcd3OverOurs: ratio(etcd3Lock.handoff.p50, ours.handoff.p50),
        handoffP50OverWriteP50: refs ? ratio(ours.handoff.p50, refs.writeP50) : Number.NaN,
        handoffP50OverWriteUnderLoadP50: ratio(ours.handoff.p50, ours.writeUnderLoad.p50),
      },
    };
  } finally {
    await Promise.all(
      workers.map(async (w) => {
        if (!w.running) return;
        try {
          w.send({ type: 'stop' });
          await w.waitForMessage('stopped', 10_000);
        } catch {
          // fall through to the kill
        }
        await w.kill('SIGKILL');
      }),
    );
  }
}
