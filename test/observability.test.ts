// Metrics (OpenTelemetry SDK, in-memory reader), events$ and logs, against real etcd.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { Injectable, type LoggerService } from '@nestjs/common';
import { Interval, ScheduleModule } from '@nestjs/schedule';
import { metrics as otelMetrics } from '@opentelemetry/api';
import { AggregationTemporality, InMemoryMetricExporter, MeterProvider, PeriodicExportingMetricReader } from '@opentelemetry/sdk-metrics';
import { Test } from '@nestjs/testing';
import { CoordinationTestingModule } from '../lib/testing/index.js';
import {
  CoordinationEvents,
  ElectionService,
  EtcdUnavailableError,
  LeaderOnly,
  LockService,
  LockTimeoutError,
  SessionService,
  WithLock,
  type CoordinationEvent,
} from '../lib/index.js';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { closeApps, createApp, delay, eventually, uniqueNamespace } from './support/apps.js';
import { counted, recorded, testMeter, type TestMeter } from './support/metrics.js';

const etcd = etcdFixture();

/** Every line the library logged, with its level. */
class CapturingLogger implements LoggerService {
  readonly lines: Array<{ level: string; message: string; context: unknown }> = [];
  private push(level: string, message: unknown, context: unknown) {
    this.lines.push({ level, message: String(message), context });
  }
  log(message: unknown, context?: unknown) { this.push('log', message, context); }
  error(message: unknown, context?: unknown) { this.push('error', message, context); }
  warn(message: unknown, context?: unknown) { this.push('warn', message, context); }
  debug(message: unknown, context?: unknown) { this.push('debug', message, context); }
  verbose(message: unknown, context?: unknown) { this.push('verbose', message, context); }
  at(level: string): string[] {
    return this.lines.filter((l) => l.level === level).map((l) => l.message);
  }
}

function record(events: CoordinationEvents): CoordinationEvent[] {
  const seen: CoordinationEvent[] = [];
  events.events$.subscribe((event) => seen.push(event));
  return seen;
}

const meters: TestMeter[] = [];
function meter(): TestMeter {
  const m = testMeter();
  meters.push(m);
  return m;
}

describe('metrics, events$ and logs (real etcd)', () => {
  after(async () => {
    await closeApps();
    await Promise.all(meters.map((m) => m.close()));
  });

  it('lock acquisitions by outcome, wait and hold durations, and the events in order', async () => {
    const ns = uniqueNamespace('metrics');
    const [meterA, meterB] = [meter(), meter()];
    const a = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'a', metrics: { meterProvider: meterA.provider } });
    const b = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'b', metrics: { meterProvider: meterB.provider } });
    const eventsA = record(a.get(CoordinationEvents));
    const eventsB = record(b.get(CoordinationEvents));

    const hold = await a.get(LockService).acquire('job');
    await assert.rejects(b.get(LockService).acquire('job', { timeout: 300 }), LockTimeoutError);
    assert.equal(await b.get(LockService).tryAcquire('job'), null);
    assert.equal(await b.get(LockService).withLock('job', async () => 'ran', { onLocked: 'skip' }), undefined);
    const controller = new AbortController();
    setTimeout(() => controller.abort(), 100);
    await assert.rejects(b.get(LockService).acquire('job', { signal: controller.signal }));
    await delay(50);
    await hold.release();
    // Re-entry shares the outer hold: counted once.
    await a.get(LockService).withLock('job', () => a.get(LockService).withLock('job', async () => 'inner'));

    const mA = await meterA.collect();
    assert.equal(counted(mA, 'coordination.lock.acquisitions', { 'coordination.kind': 'mutex', 'coordination.name': 'job', 'coordination.outcome': 'acquired' }), 2);
    assert.equal(counted(mA, 'coordination.lock.acquisitions'), 2, 're-entry is not an acquisition');
    assert.equal(recorded(mA, 'coordination.lock.wait.duration', { 'coordination.outcome': 'acquired' }), 2);
    assert.equal(recorded(mA, 'coordination.lock.hold.duration', { 'coordination.kind': 'mutex' }), 2);
    assert.equal(mA.get('coordination.lock.wait.duration')?.descriptor.unit, 's');
    assert.equal(mA.get('coordination.lock.hold.duration')?.descriptor.unit, 's');
    const holdSeconds = mA.get('coordination.lock.hold.duration')!.dataPoints[0]!.value as { sum: number };
    assert.ok(holdSeconds.sum >= 0.4 && holdSeconds.sum < 600, `hold durations are in seconds (sum ${holdSeconds.sum})`);
    assert.equal(counted(mA, 'coordination.hold.lost'), 0);

    const mB = await meterB.collect();
    assert.equal(counted(mB, 'coordination.lock.acquisitions', { 'coordination.outcome': 'timeout' }), 1);
    assert.equal(counted(mB, 'coordination.lock.acquisitions', { 'coordination.outcome': 'skipped-held' }), 2);
    assert.equal(counted(mB, 'coordination.lock.acquisitions', { 'coordination.outcome': 'aborted' }), 1);
    assert.equal(counted(mB, 'coordination.lock.acquisitions', { 'coordination.outcome': 'acquired' }), 0);
    const timeoutWait = recorded(mB, 'coordination.lock.wait.duration', { 'coordination.outcome': 'timeout' });
    assert.equal(timeoutWait, 1);

    assert.deepEqual(eventsA.map((e) => e.type), ['lock.acquired', 'lock.released', 'lock.acquired', 'lock.released']);
    const acquired = eventsA[0]!;
    assert.ok(acquired.type === 'lock.acquired' && typeof acquired.fencingToken === 'bigint' && acquired.fencingToken > 0n);
    assert.ok(acquired.type === 'lock.acquired' && acquired.kind === 'mutex' && acquired.name === 'job' && acquired.waitMs >= 0);
    assert.equal(acquired.identity, 'a');
    assert.equal(acquired.namespace, ns);
    const released = eventsA[1]!;
    assert.ok(released.type === 'lock.released' && released.holdMs >= 400 && released.reason === 'released');
    assert.deepEqual(
      eventsB.map((e) => (e.type === 'lock.not-acquired' ? e.outcome : e.type)),
      ['timeout', 'skipped-held', 'skipped-held', 'aborted'],
    );
    const timedOut = eventsB[0]!;
    assert.ok(timedOut.type === 'lock.not-acquired' && timedOut.error?.name === 'LockTimeoutError' && timedOut.waitMs >= 250);
  });

  it('by default, the global MeterProvider of @opentelemetry/api (PeriodicExportingMetricReader + InMemoryMetricExporter)', async () => {
    const exporter = new InMemoryMetricExporter(AggregationTemporality.CUMULATIVE);
    const reader = new PeriodicExportingMetricReader({ exporter, exportIntervalMillis: 60_000 });
    const provider = new MeterProvider({ readers: [reader] });
    assert.ok(otelMetrics.setGlobalMeterProvider(provider), 'registered the global provider');
    try {
      const app = await createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('global') });
      await app.get(LockService).withLock('global', async () => undefined);
      await reader.forceFlush();
      const exported = exporter.getMetrics().at(-1)!.scopeMetrics.flatMap((scope) => scope.metrics);
      const byName = new Map(exported.map((metric) => [metric.descriptor.name, metric]));
      assert.equal(counted(byName, 'coordination.lock.acquisitions', { 'coordination.name': 'global', 'coordination.outcome': 'acquired' }), 1);
      assert.equal(recorded(byName, 'coordination.lock.hold.duration', { 'coordination.name': 'global' }), 1);
      await app.close();
    } finally {
      otelMetrics.disable();
      await provider.shutdown();
    }
  });

  it('shutdown ends holds as "shutdown" and completes events$; the testing kit offers the same events', async () => {
    const app = await createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('shutdown') });
    const seen: string[] = [];
    let completed = false;
    app.get(CoordinationEvents).events$.subscribe({
      next: (e) => seen.push(e.type === 'lock.released' ? `released:${e.reason}` : e.type),
      complete: () => (completed = true),
    });
    await app.get(LockService).acquire('kept');
    await app.close();
    assert.deepEqual(seen, ['lock.acquired', 'released:shutdown']);
    assert.ok(completed, 'events$ completed on shutdown');

    const kit = await Test.createTestingModule({ imports: [CoordinationTestingModule.forRoot()] }).compile();
    await kit.init();
    const kitEvents = record(kit.get(CoordinationEvents));
    await kit.get(LockService).withLock('fake', async () => undefined);
    assert.deepEqual(kitEvents.map((e) => e.type), ['lock.acquired', 'lock.released']);
    await kit.close();
  });

  it('names: false leaves lock names out of the attributes', async () => {
    const m = meter();
    const app = await createApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('nonames'), metrics: { meterProvider: m.provider, names: false } });
    await app.get(LockService).withLock('order-42', async () => undefined);
    await app.get(LockService).semaphore('pool', 2).run(async () => undefined);
    const metrics = await m.collect();
    assert.equal(counted(metrics, 'coordination.lock.acquisitions', { 'coordination.kind': 'mutex' }), 1);
    assert.equal(counted(metrics, 'coordination.lock.acquisitions', { 'coordination.kind': 'semaphore' }), 1);
    for (const metric of metrics.values()) {
      for (const point of metric.dataPoints) assert.equal(point.attributes['coordination.name'], undefined, metric.descriptor.name);
    }
  });

  it('leadership changes and term length; campaigns are not lock acquisitions', async () => {
    const ns = uniqueNamespace('leaders');
    const [meterA, meterB] = [meter(), meter()];
    const a = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'a', election: 'leader', metrics: { meterProvider: meterA.provider } });
    const eventsA = record(a.get(CoordinationEvents));
    assert.ok(a.get(ElectionService).isLeader());
    const b = await createApp({ hosts: etcd().endpoint, namespace: ns, identity: 'b', election: 'leader', metrics: { meterProvider: meterB.provider } });
    const eventsB = record(b.get(CoordinationEvents));
    await delay(200);
    await a.get(ElectionService).resign(undefined, { rejoin: false });
    await eventually(() => b.get(ElectionService).isLeader(), 10_000, 'b leads');
    await eventually(() => eventsB.some((e) => e.type === 'leadership.gained'), 5_000, 'b saw its gain');

    const lost = eventsA.find((e) => e.type === 'leadership.lost');
    assert.ok(lost && lost.type === 'leadership.lost' && lost.election === 'leader' && lost.cause === 'resigned' && lost.termMs >= 150, JSON.stringify(lost, (_k, v) => (typeof v === 'bigint' ? String(v) : v)));
    const gained = eventsB.find((e) => e.type === 'leadership.gained');
    assert.ok(gained && gained.type === 'leadership.gained' && gained.fencingToken > 0n && gained.identity === 'b');

    const mA = await meterA.collect();
    assert.equal(counted(mA, 'coordination.leadership.changes', { 'coordination.change': 'gained', 'coordination.election': 'leader' }), 1);
    assert.equal(counted(mA, 'coordination.leadership.changes', { 'coordination.change': 'lost', 'coordination.election': 'leader' }), 1);
    assert.equal(recorded(mA, 'coordination.leadership.term.duration', { 'coordination.election': 'leader' }), 1);
    assert.equal(mA.get('coordination.leadership.term.duration')?.descriptor.unit, 's');
    assert.equal(counted(mA, 'coordination.lock.acquisitions'), 0);
    const mB = await meterB.collect();
    assert.equal(counted(mB, 'coordination.leadership.changes', { 'coordination.change': 'gained' }), 1);
  });

  it('an etcd outage: one warning when it starts, one when it ends (plus the session loss), across many scheduled ticks', async () => {
    const proxy = await startProxy(etcd().endpoint);
    const logger = new CapturingLogger();
    const ns = uniqueNamespace('outage');
    let ticks = 0;
    @Injectable()
    class Ticker {
      @Interval(100)
      @LeaderOnly()
      async tick() {
        ticks++;
      }

      // Scheduled (the metadata is what counts; the hour-long period keeps the scheduler out of it).
      @Interval(3_600_000)
      @WithLock('ticket', { timeout: 800 })
      async scheduledLocked() {
        return 'ran';
      }

      @WithLock('ticket', { timeout: 800 })
      async directLocked() {
        return 'ran';
      }
    }
    const m = meter();
    try {
      const app = await createApp({
        hosts: proxy.endpoint, namespace: ns, identity: 'obs-1', election: 'leader', sessionTtl: 2, requestTimeout: 1_000,
        logger, logLevel: 'verbose', metrics: { meterProvider: m.provider },
        imports: [ScheduleModule.forRoot()], providers: [Ticker],
      });
      const events = record(app.get(CoordinationEvents));
      const sessions = app.get(SessionService);
      await eventually(() => ticks > 0, 5_000, 'the leader ticks');
      const held = await app.get(LockService).acquire('held');
      const warningsBefore = logger.at('warn').length;

      proxy.setMode({ kind: 'blackhole' });
      await eventually(() => sessions.state.status === 'lost', 10_000, 'session lost');
      assert.ok(held.signal.aborted);
      const ticksAtLoss = ticks;
      // Several scheduled ticks (every 100 ms) and campaign retries while etcd stays away.
      await eventually(() => events.some((e) => e.type === 'etcd.error' && e.operation === 'lease-grant'), 10_000, 'a failed session grant');
      // A lock wait that ends during the outage names the outage, not "held elsewhere".
      await assert.rejects(app.get(LockService).acquire('during', { timeout: 1_500 }), EtcdUnavailableError);
      // A scheduled @WithLock tick is skipped (undefined, debug line) instead of rejecting once per
      // tick into @nestjs/schedule's error log; a direct call still gets the typed error.
      const ticker = app.get(Ticker);
      assert.equal(await ticker.scheduledLocked(), undefined);
      assert.ok(logger.at('debug').some((line) => /scheduledLocked\(\) skipped: etcd could not be reached/.test(line)), 'the skip is logged at debug');
      await assert.rejects(ticker.directLocked(), EtcdUnavailableError);
      assert.equal(ticks, ticksAtLoss, '@LeaderOnly skipped every tick without leadership');
      proxy.setMode({ kind: 'reset' });
      await delay(100);
      proxy.setMode({ kind: 'pass' });
      await eventually(() => app.get(ElectionService).isLeader(), 15_000, 'leader again after the outage');
      await eventually(() => events.some((e) => e.type === 'etcd.outage-ended'), 5_000, 'outage ended');

      const warnings = logger.at('warn').slice(warningsBefore);
      assert.equal(warnings.length, 3, `warnings during the outage:\n${warnings.join('\n')}`);
      assert.match(warnings[0]!, /etcd is not answering/);
      assert.match(warnings[1]!, /etcd session lost/);
      assert.match(warnings[2]!, /etcd answers again after an outage of \d+\.\d s/);
      assert.deepEqual(logger.at('error'), [], 'no error (and no stack trace) logged');
      assert.ok(logger.at('debug').some((line) => /Ticker\.tick\(\) skipped/.test(line)), 'skipped ticks are logged at debug level');
      assert.ok(!logger.lines.some((l) => l.level !== 'debug' && l.level !== 'verbose' && /skipped/.test(l.message)), 'skips only at debug/verbose');
      for (const line of logger.lines) {
        assert.ok(line.message.includes('identity=obs-1') && line.message.includes(`namespace=${JSON.stringify(ns)}`), `identity and namespace in: ${line.message}`);
        assert.equal(line.context, 'Coordination');
      }

      const types: string[] = events.map((e) => e.type);
      const order = ['etcd.outage-started', 'session.lost', 'etcd.outage-ended', 'session.created', 'leadership.gained'];
      let at = -1;
      for (const type of order) {
        const next = types.indexOf(type, at + 1);
        assert.ok(next > at, `${type} after ${order[order.indexOf(type) - 1]}: ${types.join(', ')}`);
        at = next;
      }
      const during = events.find((e) => e.type === 'lock.not-acquired' && e.name === 'during');
      assert.ok(during && during.type === 'lock.not-acquired' && during.outcome === 'unavailable' && during.error?.code === 'ETCD_UNAVAILABLE');
      const lostHold = events.find((e) => e.type === 'lock.lost');
      assert.ok(lostHold && lostHold.type === 'lock.lost' && lostHold.name === 'held');
      const lostLead = events.find((e) => e.type === 'leadership.lost');
      assert.ok(lostLead && lostLead.type === 'leadership.lost' && lostLead.cause === 'lost');
      const sessionLost = events.find((e) => e.type === 'session.lost');
      assert.ok(sessionLost && sessionLost.type === 'session.lost' && sessionLost.cause === 'deadline');

      const metrics = await m.collect();
      assert.equal(counted(metrics, 'coordination.session.lost', { 'coordination.reason': 'deadline' }), 1);
      assert.equal(counted(metrics, 'coordination.hold.lost', { 'coordination.kind': 'mutex', 'coordination.name': 'held' }), 1);
      assert.equal(counted(metrics, 'coordination.leadership.changes', { 'coordination.change': 'lost' }), 1);
      assert.ok(counted(metrics, 'coordination.etcd.errors', { 'coordination.operation': 'lease-grant' }) >= 1);
      assert.equal(counted(metrics, 'coordination.lock.acquisitions', { 'coordination.name': 'during', 'coordination.outcome': 'unavailable' }), 1);
      await app.close();
    } finally {
      await proxy.close();
    }
  });

  it('works without @opentelemetry/api installed (module resolution hidden by a loader hook)', async () => {
    const dir = mkdtempSync(path.join(tmpdir(), 'no-otel-'));
    try {
      writeFileSync(path.join(dir, 'hooks.mjs'), [
        'export async function resolve(specifier, context, next) {',
        "  if (specifier === '@opentelemetry/api' || specifier.startsWith('@opentelemetry/')) {",
        "    throw Object.assign(new Error(`Cannot find package '${specifier}' (hidden by the test)`), { code: 'ERR_MODULE_NOT_FOUND' });",
        '  }',
        '  return next(specifier, context);',
        '}',
      ].join('\n'));
      writeFileSync(path.join(dir, 'register.mjs'), "import { register } from 'node:module';\nregister('./hooks.mjs', import.meta.url);\n");
      const fixture = fileURLToPath(new URL('./fixtures/no-otel.js', import.meta.url));
      const child = spawn(process.execPath, ['--import', pathToUrl(path.join(dir, 'register.mjs')), fixture], {
        env: { ...process.env, ETCD_ENDPOINT: etcd().endpoint, NO_OTEL_NAMESPACE: uniqueNamespace('no-otel') },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      let stdout = '';
      let stderr = '';
      child.stdout.on('data', (d) => (stdout += d));
      child.stderr.on('data', (d) => (stderr += d));
      const code = await new Promise<number | null>((resolve) => child.on('close', resolve));
      assert.equal(code, 0, `child failed:\n${stdout}\n${stderr}`);
      const result = JSON.parse(stdout.trim().split('\n').at(-1)!) as { hidden: boolean; ran: string; events: string[] };
      assert.equal(result.hidden, true, 'the loader hook really hid @opentelemetry/api');
      assert.equal(result.ran, 'ran');
      assert.deepEqual(result.events, ['lock.acquired', 'lock.released']);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

function pathToUrl(file: string): string {
  return new URL(`file://${file}`).href;
}
