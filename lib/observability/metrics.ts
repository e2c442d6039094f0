import { LIBRARY_NAME, LIBRARY_VERSION } from './version.js';

/**
 * The part of an OpenTelemetry `MeterProvider` the library uses. Declared
 * here (not imported from `@opentelemetry/api`) so that the library's types
 * do not need `@opentelemetry/api` installed.
 */
export interface MeterProviderLike {
  getMeter(name: string, version?: string): unknown;
}

type Attributes = Record<string, string>;
interface Recorder {
  record(value: number, attributes?: Attributes): void;
}
interface Adder {
  add(value: number, attributes?: Attributes): void;
}
interface MeterLike {
  createHistogram(name: string, options: { description: string; unit: string; advice?: { explicitBucketBoundaries: number[] } }): Recorder;
  createCounter(name: string, options: { description: string; unit?: string }): Adder;
}

/** Bucket boundaries in seconds for waits and holds: 1 ms to 5 min. */
const DURATION_BUCKETS = [0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300];
/** Leadership terms: 1 s to a day. */
const TERM_BUCKETS = [1, 5, 10, 30, 60, 300, 900, 1800, 3600, 7200, 21600, 43200, 86400];

/** The instruments of one module instance (internal). Names follow OpenTelemetry's conventions. */
export class CoordinationMetrics {
  readonly waitDuration: Recorder;
  readonly holdDuration: Recorder;
  readonly acquisitions: Adder;
  readonly holdsLost: Adder;
  readonly sessionsLost: Adder;
  readonly leadershipChanges: Adder;
  readonly termDuration: Recorder;
  readonly etcdErrors: Adder;

  constructor(meter: MeterLike) {
    this.waitDuration = meter.createHistogram('coordination.lock.wait.duration', {
      description: 'Time from an acquire call to its outcome (acquired, timeout, ...).',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.holdDuration = meter.createHistogram('coordination.lock.hold.duration', {
      description: 'Time a lock, read/write hold or semaphore permit was held (released or lost).',
      unit: 's',
      advice: { explicitBucketBoundaries: DURATION_BUCKETS },
    });
    this.acquisitions = meter.createCounter('coordination.lock.acquisitions', {
      description: 'Acquire calls by coordination.outcome (re-entry not counted).',
      unit: '{acquisition}',
    });
    this.holdsLost = meter.createCounter('coordination.hold.lost', {
      description: 'Holds that ended without a release (session lost, key removed).',
      unit: '{hold}',
    });
    this.sessionsLost = meter.createCounter('coordination.session.lost', {
      description: 'etcd sessions (leases) lost, by coordination.reason.',
      unit: '{session}',
    });
    this.leadershipChanges = meter.createCounter('coordination.leadership.changes', {
      description: 'Leadership gained or lost by this instance, by coordination.change.',
      unit: '{change}',
    });
    this.termDuration = meter.createHistogram('coordination.leadership.term.duration', {
      description: 'How long this instance led an election.',
      unit: 's',
      advice: { explicitBucketBoundaries: TERM_BUCKETS },
    });
    this.etcdErrors = meter.createCounter('coordination.etcd.errors', {
      description: 'Failed etcd requests, by coordination.operation and error.type.',
      unit: '{error}',
    });
  }
}

/**
 * The metrics of a module instance: from `meterProvider` if given, else from
 * `@opentelemetry/api`'s global provider. `@opentelemetry/api` is an optional
 * peer dependency, imported here only (lazily): without it, or with
 * `metrics: false`, there are no metrics and nothing fails.
 */
export async function createMetrics(meterProvider?: MeterProviderLike): Promise<CoordinationMetrics | undefined> {
  let provider = meterProvider;
  let noopMeter: object | undefined;
  if (!provider) {
    try {
      // A variable specifier keeps bundlers from insisting on the optional package.
      const specifier = '@opentelemetry/api';
      const api = (await import(specifier)) as { metrics?: { getMeterProvider(): MeterProviderLike }; createNoopMeter?: () => object };
      provider = api.metrics?.getMeterProvider();
      noopMeter = api.createNoopMeter?.();
    } catch {
      return undefined; // not installed: no metrics
    }
  }
  const meter = provider?.getMeter(LIBRARY_NAME, LIBRARY_VERSION) as MeterLike | undefined;
  // No SDK registered when the module started: the global provider is the API's no-op, whose meter
  // records nothing, now or later. Building attributes for it cost every lock cycle several us.
  if (meter && noopMeter && meter.constructor === noopMeter.constructor) return undefined;
  return meter ? new CoordinationMetrics(meter) : undefined;
}
