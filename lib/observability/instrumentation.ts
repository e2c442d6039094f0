import { performance } from 'node:perf_hooks';
import { Subject, type Observable } from 'rxjs';
import type { LoggerService } from '@nestjs/common';
import { classifyEtcdError, redact } from '../etcd/etcd-errors.js';
import {
  CoordinationError,
  EtcdUnavailableError,
  HoldLostError,
  LockAbortedError,
  LockTimeoutError,
  SessionLostError,
  ShutdownError,
} from '../errors/coordination.errors.js';
import { ObservabilityMessages } from './observability.messages.js';
import type { HoldMode } from '../queue/hold.js';
import type {
  AcquireOutcome,
  CoordinationEvent,
  CoordinationEventBase,
  CoordinationKind,
  EtcdOperation,
  EventError,
} from './events.js';
import { CoordinationLogger, type CoordinationLogLevel } from './logger.js';
import { createMetrics, type CoordinationMetrics, type MeterProviderLike } from './metrics.js';

/** What the engine tells about a queue (a subset of QueueSpec, to keep this file free of the engine). */
export interface InstrumentedSpec {
  readonly name: string;
  readonly mode: HoldMode;
}

/** What the instrumentation reads of a hold. */
interface InstrumentedHold {
  readonly fencingToken: bigint;
  /** The hold ended (its signal aborted, or would have: holds make their signal on demand). */
  readonly hasEnded: boolean;
  /** What its signal aborted with, once ended. */
  readonly endReason: unknown;
  /** Ended by a plain release (then `endReason` need not be made). */
  readonly endedByRelease: boolean;
}

/** Options that shape the instrumentation (validated in coordination.options.ts). */
export interface InstrumentationOptions {
  identity: string;
  namespace: string;
  logger?: LoggerService;
  logLevel?: CoordinationLogLevel | false;
  metrics?: false | { meterProvider?: MeterProviderLike; names?: boolean };
}

const KINDS: Record<HoldMode, CoordinationKind | undefined> = {
  exclusive: 'mutex',
  read: 'read',
  write: 'write',
  permit: 'semaphore',
  leader: undefined, // an election: reported as leadership, not as a lock
};

/**
 * The one emitter of a module instance (internal): the engine, the sessions
 * and the etcd requests call its hooks (one line each), and it turns them
 * into {@link CoordinationEvent}s, OpenTelemetry metrics and outage logs.
 * Never throws into the caller.
 */
export class Instrumentation {
  readonly logger: CoordinationLogger;
  private readonly subject = new Subject<CoordinationEvent>();
  private readonly started = new WeakMap<object, number>();
  private readonly names: boolean;
  private outageSince?: number;

  constructor(
    private readonly options: InstrumentationOptions,
    private readonly metrics?: CoordinationMetrics,
  ) {
    this.logger = new CoordinationLogger(options, options, () => this.outageSince !== undefined);
    this.names = !(options.metrics && options.metrics.names === false);
  }

  /** Instrumentation with metrics (unless turned off or `@opentelemetry/api` is absent). */
  static async create(options: InstrumentationOptions): Promise<Instrumentation> {
    const metrics = options.metrics === false ? undefined : await createMetrics(options.metrics?.meterProvider);
    return new Instrumentation(options, metrics);
  }

  /** No metrics, no logger options: for engines made outside the module (the testing kit). */
  static plain(identity = 'test', namespace = ''): Instrumentation {
    return new Instrumentation({ identity, namespace, metrics: false });
  }

  get events$(): Observable<CoordinationEvent> {
    return this.subject.asObservable();
  }

  /** True between the start and the end of an etcd outage. */
  get inOutage(): boolean {
    return this.outageSince !== undefined;
  }

  /**
   * Wraps one acquire (or, with `tryOnly`, a try) of the engine: reports its
   * outcome and wait, and starts the hold's clock. Re-entry (`reentrant`) is not reported.
   */
  async acquisition<R>(spec: InstrumentedSpec, tryOnly: boolean, run: () => Promise<R>, reentrant: (result: R) => boolean): Promise<R> {
    const startedAt = performance.now();
    let result: R;
    try {
      result = await run();
    } catch (err) {
      this.safely(() => this.acquireFailed(spec, outcomeOf(err), performance.now() - startedAt, err));
      throw err;
    }
    this.safely(() => {
      if (result === null) {
        if (tryOnly) this.acquireFailed(spec, 'skipped-held', performance.now() - startedAt);
      } else if (!reentrant(result)) this.acquired(spec, result as InstrumentedHold, performance.now() - startedAt);
    });
    return result;
  }

  private acquired(spec: InstrumentedSpec, hold: InstrumentedHold, waitMs: number): void {
    if (this.started.has(hold)) return;
    this.started.set(hold, performance.now());
    const kind = KINDS[spec.mode];
    if (kind === undefined) {
      this.emit({ type: 'leadership.gained', election: spec.name, fencingToken: hold.fencingToken });
      this.metrics?.leadershipChanges.add(1, this.attrs({ 'coordination.change': 'gained' }, spec.name, 'coordination.election'));
    } else {
      if (this.subject.observed) this.emit({ type: 'lock.acquired', kind, name: spec.name, waitMs, fencingToken: hold.fencingToken });
      this.recordAcquire(kind, 'acquired', spec.name, waitMs);
    }
    // Ended before the caller got it (lost at once): report the end too.
    if (hold.hasEnded) this.holdEnded(spec, hold);
  }

  private acquireFailed(spec: InstrumentedSpec, outcome: Exclude<AcquireOutcome, 'acquired'>, waitMs: number, err?: unknown): void {
    const kind = KINDS[spec.mode];
    if (kind === undefined) return; // a campaign that did not win: leadership did not change
    if (this.subject.observed) {
      this.emit({ type: 'lock.not-acquired', kind, name: spec.name, outcome, waitMs, ...(err === undefined ? {} : { error: eventError(err) }) });
    }
    this.recordAcquire(kind, outcome, spec.name, waitMs);
  }

  private recordAcquire(kind: CoordinationKind, outcome: AcquireOutcome, name: string, waitMs: number): void {
    if (!this.metrics) return;
    const attributes = this.attrs({ 'coordination.kind': kind, 'coordination.outcome': outcome }, name);
    this.metrics.acquisitions.add(1, attributes);
    this.metrics.waitDuration.record(waitMs / 1000, attributes);
  }

  /** A hold ended by any path (the engine's onEnd): released, lost or shut down. */
  holdEnded(spec: InstrumentedSpec, hold: InstrumentedHold): void {
    this.safely(() => {
      const since = this.started.get(hold);
      if (since === undefined) return; // not handed out yet: acquired() reports it
      this.started.delete(hold);
      const heldMs = performance.now() - since;
      // A plain release: its reason (the kind's "released" error) is made only if someone reads the signal.
      const reason = hold.endedByRelease && !this.subject.observed ? undefined : hold.endReason;
      const lost = reason instanceof SessionLostError || reason instanceof HoldLostError;
      const message = !this.subject.observed ? '' : reason instanceof Error ? redact(reason.message) : String(reason);
      const kind = KINDS[spec.mode];
      if (kind === undefined) {
        const cause = lost ? 'lost' : reason instanceof ShutdownError ? 'shutdown' : 'resigned';
        this.emit({ type: 'leadership.lost', election: spec.name, termMs: heldMs, cause, reason: message });
        this.metrics?.leadershipChanges.add(1, this.attrs({ 'coordination.change': 'lost' }, spec.name, 'coordination.election'));
        this.metrics?.termDuration.record(heldMs / 1000, this.attrs({}, spec.name, 'coordination.election'));
        return;
      }
      const attributes = this.metrics && this.attrs({ 'coordination.kind': kind }, spec.name);
      this.metrics?.holdDuration.record(heldMs / 1000, attributes);
      if (lost) {
        this.emit({ type: 'lock.lost', kind, name: spec.name, holdMs: heldMs, reason: message });
        this.metrics?.holdsLost.add(1, attributes);
      } else {
        if (this.subject.observed) this.emit({ type: 'lock.released', kind, name: spec.name, holdMs: heldMs, reason: reason instanceof ShutdownError ? 'shutdown' : 'released' });
      }
    });
  }

  /** A session (lease) was granted: etcd answers, so an outage is over. */
  sessionCreated(leaseHex: string, ttlSeconds: number): void {
    this.safely(() => {
      this.etcdAnswered();
      this.emit({ type: 'session.created', leaseHex, ttlSeconds });
    });
  }

  /** A session ended; `closed` (shutdown) is not a loss. */
  sessionEnded(leaseHex: string, cause: 'deadline' | 'lease-gone' | 'history-reset' | 'closed', reason: string): void {
    if (cause === 'closed') return;
    this.safely(() => {
      this.emit({ type: 'session.lost', leaseHex, cause, reason: redact(reason) });
      this.metrics?.sessionsLost.add(1, { 'coordination.reason': cause });
    });
  }

  /**
   * An etcd request failed. Only `session` failures (keepalive, lease grant)
   * start an outage: a single failed request to one member of a cluster is not one.
   */
  etcdError(operation: EtcdOperation, err: unknown, session = false): void {
    this.safely(() => {
      const code = errorCode(err);
      const message = redact(err instanceof Error ? err.message : String(err));
      this.emit({ type: 'etcd.error', operation, code, message });
      this.metrics?.etcdErrors.add(1, { 'coordination.operation': operation, 'error.type': code });
      if (session && classifyEtcdError(err) === 'unavailable') this.outageStarted(message);
    });
  }

  /** No keepalive was answered within the TTL: etcd is not answering us (an outage starts). */
  etcdUnanswered(reason: string): void {
    this.safely(() => this.outageStarted(redact(reason)));
  }

  /** etcd answered a keepalive: ends an outage, if one was reported. */
  etcdAnswered(): void {
    if (this.outageSince === undefined) return;
    const durationMs = performance.now() - this.outageSince;
    this.outageSince = undefined;
    this.logger.notice(ObservabilityMessages.outageEnded(durationMs));
    this.emit({ type: 'etcd.outage-ended', durationMs });
  }

  private outageStarted(reason: string): void {
    if (this.outageSince !== undefined) return;
    this.outageSince = performance.now();
    this.logger.notice(ObservabilityMessages.outageStarted(reason));
    this.emit({ type: 'etcd.outage-started', reason });
  }

  /** Shutdown: completes `events$`. */
  close(): void {
    this.subject.complete();
  }

  private attrs(base: Record<string, string>, name: string, nameKey = 'coordination.name'): Record<string, string> {
    return this.names ? { ...base, [nameKey]: name } : base;
  }

  private emit(event: DistributiveOmit<CoordinationEvent, keyof CoordinationEventBase>): void {
    if (this.subject.closed || !this.subject.observed) return;
    const full = { ...event, time: new Date(), identity: this.options.identity, namespace: this.options.namespace } as CoordinationEvent;
    try {
      this.subject.next(full);
    } catch (err) {
      this.logger.error(ObservabilityMessages.subscriberFailed(err instanceof Error ? err.message : String(err)));
    }
  }

  private safely(report: () => void): void {
    try {
      report();
    } catch (err) {
      this.logger.error(ObservabilityMessages.subscriberFailed(err instanceof Error ? err.message : String(err)));
    }
  }
}

type DistributiveOmit<T, K extends PropertyKey> = T extends unknown ? Omit<T, K> : never;

function outcomeOf(err: unknown): Exclude<AcquireOutcome, 'acquired' | 'skipped-held'> {
  if (err instanceof LockTimeoutError) return 'timeout';
  if (err instanceof LockAbortedError || err instanceof ShutdownError) return 'aborted';
  if (err instanceof EtcdUnavailableError) return 'unavailable';
  return 'error';
}

function errorCode(err: unknown): string {
  if (err instanceof CoordinationError) return err.code;
  const grpc = (err as { code?: unknown } | null)?.code;
  if (typeof grpc === 'number' || typeof grpc === 'string') return `GRPC_${grpc}`;
  return classifyEtcdError(err).toUpperCase();
}

function eventError(err: unknown): EventError {
  const error = err instanceof Error ? err : new Error(String(err));
  const code = (error as { code?: unknown }).code;
  return { name: error.name, ...(typeof code === 'string' ? { code } : {}), message: redact(error.message) };
}
