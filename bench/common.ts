// Shared helpers of the benchmark (main process and workers).
import 'reflect-metadata';
import { Module, type DynamicModule, type INestApplicationContext, type Provider } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CoordinationModule, type CoordinationModuleOptions } from '../lib/index.js';

/**
 * Monotonic time in nanoseconds. `process.hrtime` reads CLOCK_MONOTONIC, which
 * is system-wide on Linux, so stamps taken in different processes of this
 * machine are comparable (handoffs and failovers are measured across processes).
 */
export function nowNs(): bigint {
  return process.hrtime.bigint();
}

/** Milliseconds between two nanosecond stamps. */
export function msBetween(from: bigint, to: bigint): number {
  return Number(to - from) / 1e6;
}

export function sleep(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

/** Sleeps until the monotonic stamp `at` (ns). */
export async function sleepUntil(at: bigint): Promise<void> {
  for (;;) {
    const left = msBetween(nowNs(), at);
    if (left <= 0) return;
    await sleep(Math.min(left, 50));
  }
}

/** A Nest application that imports CoordinationModule with `options`, plus `providers`. */
@Module({})
export class BenchAppModule {
  static with(options: CoordinationModuleOptions, providers: Provider[] = []): DynamicModule {
    return { module: BenchAppModule, imports: [CoordinationModule.forRoot(options)], providers };
  }
}

/** Creates an application context the way an app would (warnings and errors logged). */
export function createBenchApp(options: CoordinationModuleOptions, providers: Provider[] = []): Promise<INestApplicationContext> {
  // A generous connect timeout: on a loaded 2-core machine the first connection of a fresh process
  // can take longer than the default, and the bench measures what comes after it.
  return NestFactory.createApplicationContext(BenchAppModule.with({ connectTimeout: 30_000, ...options }, providers), {
    logger: ['error', 'warn'],
    abortOnError: false,
  });
}

/** Memory of this process in bytes (after a GC when --expose-gc is on). */
export function memorySnapshot(): { rss: number; heapUsed: number; external: number } {
  const gc = (globalThis as { gc?: () => void }).gc;
  if (gc) {
    gc();
    gc();
  }
  const { rss, heapUsed, external } = process.memoryUsage();
  return { rss, heapUsed, external };
}

/** Full-jitter exponential backoff, the retry loop users write around etcd3's try-lock. */
export function userBackoffMs(attempt: number, baseMs: number, capMs: number): number {
  return Math.random() * Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
}

export const ETCD3_RETRY = { baseMs: 5, capMs: 100 } as const;
