import { Inject, Injectable } from '@nestjs/common';
import type { Observable } from 'rxjs';
import { INSTRUMENTATION } from './instrumentation.token.js';
import type { Instrumentation } from './instrumentation.js';

/** The kind of a hold, as events and metrics name it (low cardinality). */
export type CoordinationKind = 'mutex' | 'read' | 'write' | 'semaphore';

/** How an acquire ended. `skipped-held`: a try (or `onLocked: 'skip' | 'fail'`) found it held elsewhere. */
export type AcquireOutcome = 'acquired' | 'timeout' | 'skipped-held' | 'aborted' | 'unavailable' | 'error';

/** Fields every event carries: which application instance saw it. */
export interface CoordinationEventBase {
  /** When it happened. */
  readonly time: Date;
  /** The `identity` option of the instance. */
  readonly identity: string;
  /** The `namespace` option of the instance. */
  readonly namespace: string;
}

/** The error of a failed acquire or etcd request: its class, code and a message without secrets. */
export interface EventError {
  readonly name: string;
  readonly code?: string;
  readonly message: string;
}

/** A lock, read/write hold or semaphore permit was acquired (re-entry is not counted). */
export interface LockAcquiredEvent extends CoordinationEventBase {
  readonly type: 'lock.acquired';
  readonly kind: CoordinationKind;
  readonly name: string;
  /** From the call to the hold, in ms. */
  readonly waitMs: number;
  readonly fencingToken: bigint;
}

/** An acquire (or try) ended without a hold. */
export interface LockNotAcquiredEvent extends CoordinationEventBase {
  readonly type: 'lock.not-acquired';
  readonly kind: CoordinationKind;
  readonly name: string;
  readonly outcome: Exclude<AcquireOutcome, 'acquired'>;
  readonly waitMs: number;
  /** Absent for `skipped-held`. */
  readonly error?: EventError;
}

/** A hold ended by release (or on shutdown). */
export interface LockReleasedEvent extends CoordinationEventBase {
  readonly type: 'lock.released';
  readonly kind: CoordinationKind;
  readonly name: string;
  readonly holdMs: number;
  /** `shutdown` when the application's shutdown ended it. */
  readonly reason: 'released' | 'shutdown';
}

/** A hold ended without being released: its session was lost, or etcd showed its key gone. */
export interface LockLostEvent extends CoordinationEventBase {
  readonly type: 'lock.lost';
  readonly kind: CoordinationKind;
  readonly name: string;
  readonly holdMs: number;
  readonly reason: string;
}

/** A new etcd session (lease) was granted. */
export interface SessionCreatedEvent extends CoordinationEventBase {
  readonly type: 'session.created';
  readonly leaseHex: string;
  readonly ttlSeconds: number;
}

/** The session ended other than by shutdown; every hold on it was lost. */
export interface SessionLostEvent extends CoordinationEventBase {
  readonly type: 'session.lost';
  readonly leaseHex: string;
  /** `deadline`: no keepalive answered within the TTL; `lease-gone`: etcd says the lease ended; `history-reset`. */
  readonly cause: 'deadline' | 'lease-gone' | 'history-reset';
  readonly reason: string;
}

/** This instance became the leader of an election. */
export interface LeadershipGainedEvent extends CoordinationEventBase {
  readonly type: 'leadership.gained';
  readonly election: string;
  readonly fencingToken: bigint;
}

/** This instance stopped leading an election. */
export interface LeadershipLostEvent extends CoordinationEventBase {
  readonly type: 'leadership.lost';
  readonly election: string;
  /** How long it led, in ms. */
  readonly termMs: number;
  /** `resigned` (on purpose), `shutdown`, or `lost` (session lost, key gone). */
  readonly cause: 'resigned' | 'shutdown' | 'lost';
  readonly reason: string;
}

/** One etcd request failed. `operation` is a fixed word (no names); `message` is redacted. */
export interface EtcdErrorEvent extends CoordinationEventBase {
  readonly type: 'etcd.error';
  readonly operation: EtcdOperation;
  readonly code: string;
  readonly message: string;
}

/** etcd stopped answering this instance (keepalives or session grants failed). */
export interface EtcdOutageStartedEvent extends CoordinationEventBase {
  readonly type: 'etcd.outage-started';
  readonly reason: string;
}

/** etcd answers again after an outage. */
export interface EtcdOutageEndedEvent extends CoordinationEventBase {
  readonly type: 'etcd.outage-ended';
  readonly durationMs: number;
}

/** The etcd request kinds counted by `coordination.etcd.errors`. */
export type EtcdOperation = 'txn' | 'range' | 'lease-grant' | 'keepalive';

/** Everything {@link CoordinationEvents.events$} emits; switch on `type`. */
export type CoordinationEvent =
  | LockAcquiredEvent
  | LockNotAcquiredEvent
  | LockReleasedEvent
  | LockLostEvent
  | SessionCreatedEvent
  | SessionLostEvent
  | LeadershipGainedEvent
  | LeadershipLostEvent
  | EtcdErrorEvent
  | EtcdOutageStartedEvent
  | EtcdOutageEndedEvent;

/**
 * The coordination facts of this application as an Observable, for logging
 * or your own metrics: `moduleRef.get(CoordinationEvents).events$.subscribe(...)`.
 * Hot: a subscriber sees what happens after it subscribed. Completes on
 * shutdown. Subscribers run synchronously inside the library: keep them cheap.
 * An exception thrown by one never reaches the library's code: rxjs reports it
 * as an unhandled error (see rxjs `config.onUnhandledError`).
 */
@Injectable()
export class CoordinationEvents {
  constructor(@Inject(INSTRUMENTATION) private readonly instrumentation: Instrumentation) {}

  /** Every event from now on; completes when the application shuts down. */
  get events$(): Observable<CoordinationEvent> {
    return this.instrumentation.events$;
  }
}
