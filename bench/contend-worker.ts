// Benchmark child for section 2: `apps` app instances in one process (each its own Nest app,
// etcd client and session) loop on one lock; or etcd3's Lock with the users' retry loop.
//   node contend-worker.js <endpoint> <identity> [apps]
// Every timestamp is process.hrtime (CLOCK_MONOTONIC, comparable across processes), as a decimal string.
// Per hold: [acquired, releaseStart, releaseDone, fencing token ('' for etcd3), attempts, app, woke]
// where woke is when this process last received a watch event before the acquisition ('' if none
// since the previous hold, or when apps > 1: the stamp could belong to another app). The event loop's
// delay during the run comes from perf_hooks.monitorEventLoopDelay.
import 'reflect-metadata';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { INestApplicationContext } from '@nestjs/common';
import { Etcd3, EtcdLockFailedError, Watcher, type Lock } from 'etcd3';
import { LockService } from '../lib/index.js';
import { emit, onMessage, type JsonMessage } from '../test/harness/child.js';
import { ETCD3_RETRY, createBenchApp, nowNs, sleep, sleepUntil, userBackoffMs } from './common.js';
import { clientWatchDisconnects, installClientWatchCounter } from './metrics.js';
import { round } from './stats.js';

const [endpoint, identity, appsArg] = process.argv.slice(2);
const appCount = Number(appsArg ?? 1);
const warnings: string[] = [];
process.on('warning', (w) => warnings.push(`${w.name}: ${w.message}`));

/** Stamps the arrival of every watch response in this process (observation only). */
let lastWatchData = 0n;
function stampWatchEvents(): void {
  const proto = Watcher.prototype as unknown as { emit: (event: string | symbol, ...args: unknown[]) => boolean };
  const original = proto.emit;
  proto.emit = function stamping(this: unknown, event: string | symbol, ...args: unknown[]): boolean {
    if (event === 'data') lastWatchData = nowNs();
    return original.call(this, event, ...args);
  };
}

async function main(): Promise<void> {
  installClientWatchCounter();
  stampWatchEvents();
  const apps: INestApplicationContext[] = [];
  for (let i = 0; i < appCount; i++) apps.push(await createBenchApp({ hosts: endpoint!, identity: `${identity}-${i}`, election: false }));
  const locks = apps.map((a) => a.get(LockService));
  const raw = new Etcd3({ hosts: endpoint! });
  await raw.get('warm-up').string();
  emit({ type: 'ready', pid: process.pid });
  let chain = Promise.resolve();
  onMessage((message) => {
    chain = chain.then(() => handle(message)).catch((err: unknown) => {
      emit({ type: 'error', message: err instanceof Error ? err.stack ?? err.message : String(err) });
    });
  });

  async function handle(message: JsonMessage): Promise<void> {
    if (message.type === 'stop') {
      await Promise.all(apps.map((a) => a.close()));
      raw.close();
      emit({ type: 'stopped', warnings });
      process.exit(0);
    }
    if (message.type !== 'run') return;
    const lock = String(message.lock);
    const startNs = BigInt(String(message.startNs));
    const endNs = BigInt(String(message.endNs));
    const holds: string[][] = [];
    let failedAttempts = 0;
    const disconnectsBefore = clientWatchDisconnects();
    const eld = monitorEventLoopDelay({ resolution: 5 });
    await sleepUntil(startNs);
    eld.enable();
    const cpu0 = process.cpuUsage();
    if (message.impl === 'ours') {
      await Promise.all(
        locks.map(async (service, app) => {
          while (nowNs() < endNs) {
            const handle = await service.acquire(lock);
            const acquired = nowNs();
            const woke = appCount === 1 && lastWatchData > 0n ? String(lastWatchData) : '';
            lastWatchData = 0n;
            const releaseStart = nowNs();
            await handle.release();
            holds.push([String(acquired), String(releaseStart), String(nowNs()), handle.fencingToken.toString(), '1', String(app), woke]);
          }
        }),
      );
    } else {
      // The loop etcd3 users write: try-lock, on EtcdLockFailedError back off and retry.
      let attempt = 0;
      while (nowNs() < endNs) {
        const handle: Lock = raw.lock(lock);
        try {
          await handle.acquire();
        } catch (err) {
          if (!(err instanceof EtcdLockFailedError)) throw err;
          failedAttempts++;
          await sleep(userBackoffMs(attempt++, ETCD3_RETRY.baseMs, ETCD3_RETRY.capMs));
          continue;
        }
        const acquired = nowNs();
        const releaseStart = nowNs();
        await handle.release();
        holds.push([String(acquired), String(releaseStart), String(nowNs()), '', String(attempt + 1), '0', '']);
        attempt = 0;
      }
    }
    const cpu = process.cpuUsage(cpu0);
    eld.disable();
    // The histogram holds timer intervals (resolution + delay): keep the delay.
    const ms = (ns: number) => round(Math.max(0, ns / 1e6 - 5), 3);
    emit({
      type: 'result',
      impl: message.impl,
      holds,
      failedAttempts,
      watchDisconnects: clientWatchDisconnects() - disconnectsBefore,
      cpuMs: round((cpu.user + cpu.system) / 1000, 1),
      eventLoopDelay: { p50: ms(eld.percentile(50)), p99: ms(eld.percentile(99)), max: ms(eld.max), mean: ms(eld.mean) },
    });
  }
}

await main();
