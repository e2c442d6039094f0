// Pure logic of the observability part: the logger (levels, prefix, redaction, outage
// demotion), the option checks, the outage state and the meter's name/version.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import type { LoggerService } from '@nestjs/common';
import { config as rxjsConfig } from 'rxjs';
import { MeterProvider, MetricReader } from '@opentelemetry/sdk-metrics';
import { resolveCoordinationOptions, type CoordinationModuleOptions } from '../../lib/coordination.options.js';
import { InvalidOptionsError } from '../../lib/errors/coordination.errors.js';
import { CoordinationLogger } from '../../lib/observability/logger.js';
import { Instrumentation } from '../../lib/observability/instrumentation.js';
import { LIBRARY_NAME, LIBRARY_VERSION } from '../../lib/observability/version.js';
import type { CoordinationEvent } from '../../lib/index.js';

class Capture implements LoggerService {
  readonly lines: Array<[string, string, unknown]> = [];
  log(m: string, c?: unknown) { this.lines.push(['log', m, c]); }
  error(m: string, c?: unknown) { this.lines.push(['error', m, c]); }
  warn(m: string, c?: unknown) { this.lines.push(['warn', m, c]); }
  debug(m: string, c?: unknown) { this.lines.push(['debug', m, c]); }
  verbose(m: string, c?: unknown) { this.lines.push(['verbose', m, c]); }
}

const context = { identity: 'host:1', namespace: 'app/' };
const resolve = (options: Record<string, unknown>) => resolveCoordinationOptions(options as CoordinationModuleOptions, {});

describe('CoordinationLogger', () => {
  it('prefixes identity and namespace, passes the context, filters by level', () => {
    const capture = new Capture();
    const logger = new CoordinationLogger(context, { logger: capture, logLevel: 'log' });
    logger.error('e');
    logger.warn('w');
    logger.log('l');
    logger.debug('d');
    logger.verbose('v');
    assert.deepEqual(capture.lines, [
      ['error', '[identity=host:1 namespace="app/"] e', 'Coordination'],
      ['warn', '[identity=host:1 namespace="app/"] w', 'Coordination'],
      ['log', '[identity=host:1 namespace="app/"] l', 'Coordination'],
    ]);
  });

  it('logLevel false logs nothing; verbose logs everything', () => {
    const off = new Capture();
    const silent = new CoordinationLogger(context, { logger: off, logLevel: false });
    silent.error('e');
    silent.notice('n');
    assert.deepEqual(off.lines, []);
    const all = new Capture();
    const loud = new CoordinationLogger(context, { logger: all, logLevel: 'verbose' });
    for (const level of ['error', 'warn', 'log', 'debug', 'verbose'] as const) loud[level](level);
    assert.deepEqual(all.lines.map(([level]) => level), ['error', 'warn', 'log', 'debug', 'verbose']);
  });

  it('while quiet (an outage), warn goes out at debug, notice stays a warning', () => {
    const capture = new Capture();
    let quiet = true;
    const logger = new CoordinationLogger(context, { logger: capture }, () => quiet);
    logger.warn('repeated');
    logger.notice('outage');
    quiet = false;
    logger.warn('after');
    assert.deepEqual(capture.lines.map(([level, m]) => [level, m.replace(/^\[[^\]]+\] /, '')]), [['debug', 'repeated'], ['warn', 'outage'], ['warn', 'after']]);
  });

  it('redacts secrets and survives a throwing logger', () => {
    const capture = new Capture();
    new CoordinationLogger(context, { logger: capture }).warn('failed: password=hunter2 token: abc');
    assert.ok(!capture.lines[0]![1].includes('hunter2') && !capture.lines[0]![1].includes('abc'), capture.lines[0]![1]);
    const throwing = { log() { throw new Error('x'); }, error() { throw new Error('x'); }, warn() { throw new Error('x'); } };
    assert.doesNotThrow(() => new CoordinationLogger(context, { logger: throwing }).warn('w'));
  });
});

describe('observability options', () => {
  const refuses = (options: Record<string, unknown>, option: string, pattern: RegExp) =>
    assert.throws(() => resolve(options), (err: unknown) => err instanceof InvalidOptionsError && err.option === option && pattern.test(err.message));

  it('defaults: Nest Logger, every level, metrics from the global provider', () => {
    const resolved = resolve({});
    assert.equal(resolved.logger, undefined);
    assert.equal(resolved.logLevel, 'verbose');
    assert.deepEqual(resolved.metrics, {});
  });

  it('accepts the documented values', () => {
    assert.equal(resolve({ logLevel: false }).logLevel, false);
    assert.equal(resolve({ logLevel: 'warn' }).logLevel, 'warn');
    assert.equal(resolve({ metrics: false }).metrics, false);
    const provider = new MeterProvider();
    assert.equal((resolve({ metrics: { meterProvider: provider, names: false } }).metrics as { meterProvider: unknown }).meterProvider, provider);
  });

  it('refuses wrong values, naming the option', () => {
    refuses({ logLevel: 'info' }, 'logLevel', /'error', 'warn', 'log', 'debug', 'verbose' or false; got "info"/);
    refuses({ logLevel: true }, 'logLevel', /got boolean/);
    refuses({ logger: console.log }, 'logger', /LoggerService/);
    refuses({ logger: { log() {} } }, 'logger', /log, error and warn/);
    refuses({ metrics: true }, 'metrics', /false or an object/);
    refuses({ metrics: { meterProvider: {} } }, 'metrics.meterProvider', /getMeter/);
    refuses({ metrics: { names: 'no' } }, 'metrics.names', /boolean/);
    refuses({ metrics: { exporter: 1 } }, 'metrics', /no option "exporter"/);
  });
});

describe('Instrumentation outage state', () => {
  it('one start and one end notice per outage, however many failures', () => {
    const capture = new Capture();
    const instrumentation = new Instrumentation({ ...context, logger: capture, metrics: false });
    const events: CoordinationEvent[] = [];
    instrumentation.events$.subscribe((e) => events.push(e));
    const unavailable = Object.assign(new Error('14 UNAVAILABLE: No connection established'), { code: 14 });
    for (let i = 0; i < 5; i++) instrumentation.etcdError('keepalive', unavailable, true);
    instrumentation.logger.warn('a keepalive retry');
    instrumentation.etcdAnswered();
    instrumentation.etcdAnswered();
    const warnings = capture.lines.filter(([level]) => level === 'warn').map(([, m]) => m);
    assert.equal(warnings.length, 2, warnings.join('\n'));
    assert.match(warnings[0]!, /etcd is not answering \(14 UNAVAILABLE/);
    assert.match(warnings[1]!, /answers again after an outage of \d+\.\d s/);
    assert.deepEqual(events.map((e) => e.type), ['etcd.error', 'etcd.outage-started', 'etcd.error', 'etcd.error', 'etcd.error', 'etcd.error', 'etcd.outage-ended']);
    const error = events[0]!;
    assert.ok(error.type === 'etcd.error' && error.code === 'GRPC_14' && error.operation === 'keepalive');
  });

  it('a failed request outside the session does not start an outage', () => {
    const capture = new Capture();
    const instrumentation = new Instrumentation({ ...context, logger: capture, metrics: false });
    instrumentation.etcdError('txn', new Error('14 UNAVAILABLE'));
    assert.equal(instrumentation.inOutage, false);
    assert.deepEqual(capture.lines, []);
  });

  it('a throwing events$ subscriber does not throw into the library (rxjs reports it as unhandled)', async () => {
    const instrumentation = new Instrumentation({ ...context, logLevel: false, metrics: false });
    const reported: unknown[] = [];
    const previous = rxjsConfig.onUnhandledError;
    rxjsConfig.onUnhandledError = (err) => reported.push(err);
    try {
      instrumentation.events$.subscribe(() => {
        throw new Error('subscriber bug');
      });
      const seen: string[] = [];
      instrumentation.events$.subscribe((e) => seen.push(e.type));
      assert.doesNotThrow(() => instrumentation.sessionCreated('abc', 10));
      assert.deepEqual(seen, ['session.created'], 'the other subscribers still get the event');
      await new Promise((resolve) => setTimeout(resolve, 20)); // rxjs reports on a later tick
      assert.match(String(reported[0]), /subscriber bug/);
    } finally {
      rxjsConfig.onUnhandledError = previous;
    }
  });
});

describe('meter identity', () => {
  it('the meter is named after the package, with its version', async () => {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { name: string; version: string };
    assert.equal(LIBRARY_NAME, pkg.name);
    assert.equal(LIBRARY_VERSION, pkg.version);
    class Reader extends MetricReader {
      protected async onShutdown() {}
      protected async onForceFlush() {}
    }
    const reader = new Reader();
    const provider = new MeterProvider({ readers: [reader] });
    const instrumentation = await Instrumentation.create({ ...context, logLevel: false, metrics: { meterProvider: provider } });
    instrumentation.sessionEnded('abc', 'deadline', 'no keepalive');
    const { resourceMetrics } = await reader.collect();
    const scope = resourceMetrics.scopeMetrics[0]!;
    assert.equal(scope.scope.name, 'nest-etcd-coordination');
    assert.equal(scope.scope.version, pkg.version);
    assert.equal(scope.metrics[0]!.descriptor.name, 'coordination.session.lost');
    await provider.shutdown();
  });
});
