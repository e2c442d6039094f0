import { performance } from 'node:perf_hooks';
import { Inject, Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import { BehaviorSubject, type Observable } from 'rxjs';
import { ETCD_CLIENT_HOLDER, RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import type { EtcdClientHolder } from '../etcd/etcd-client.js';
import { isTlsFailure, isTransientEtcdError, redact, toCoordinationError } from '../etcd/etcd-errors.js';
import { EtcdWatches } from '../etcd/watch.js';
import { HistoryGuard } from '../etcd/history-guard.js';
import { EtcdLeases } from '../etcd/lease.js';
import { CoordinationError, EtcdUnavailableError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { INSTRUMENTATION } from '../observability/instrumentation.token.js';
import type { Instrumentation } from '../observability/instrumentation.js';
import { EtcdSession, type SessionEndReason } from './etcd-session.js';
import { attemptTimeout, NobodyWaitingError, nonRetryable, waitForCreation, type SessionState } from './session-creation.js';

export type { SessionState };
import { backoffDelay, sleep } from '../util/abort.js';

/**
 * Owns the application's single etcd session (lease): creates it at
 * bootstrap (failing bootstrap, bounded by `connectTimeout`, when etcd is
 * unreachable), replaces it on demand after a loss (retrying for as long as
 * the caller waits, see {@link SessionService.session}), and revokes it on
 * shutdown. Every lock and campaign of the application shares it.
 */
@Injectable()
export class SessionService implements OnModuleInit, OnApplicationShutdown {
  private get logger() { return this.instrumentation.logger; }
  private current?: EtcdSession;
  private creating?: Promise<EtcdSession>;
  private readonly ended = new Set<EtcdSession>();
  private readonly shutdownController = new AbortController();
  private readonly stateSubject = new BehaviorSubject<SessionState>({ status: 'connecting', since: new Date() });
  private readonly leases: EtcdLeases;
  /** Callers waiting for the shared creation (it stops retrying when none is left). */
  private creationWaiters = 0;
  private lastCreateError?: unknown;
  private lastCreateFailure?: EtcdUnavailableError;
  /** The slowest recent round trip of the last session: the next one plans its attempts with it. */
  private linkRttMs?: number;

  constructor(
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
    @Inject(ETCD_CLIENT_HOLDER) private readonly holder: EtcdClientHolder,
    private readonly watches: EtcdWatches,
    history: HistoryGuard,
    @Inject(INSTRUMENTATION) private readonly instrumentation: Instrumentation,
  ) {
    this.leases = new EtcdLeases(holder.client);
    // Every waiter and hold listens to this signal: many listeners are expected, not a leak.
    setMaxListeners(0, this.shutdownController.signal);
    // etcd's history was wiped or rolled back: no hold of ours may survive it.
    history.onReset((error) => {
      this.logger.error(error.message);
      this.current?.lose('history-reset', error.message, error);
    });
  }

  /** Session state: replays the current state, then every change. Completes on shutdown. */
  get state$(): Observable<SessionState> {
    return this.stateSubject.asObservable();
  }

  /** The current session state. */
  get state(): SessionState {
    return this.stateSubject.value;
  }

  /** Aborts when the application starts shutting down (internal). */
  get shutdownSignal(): AbortSignal {
    return this.shutdownController.signal;
  }

  /** How long establishing a session may take before etcd counts as unreachable (ms). */
  get connectTimeout(): number {
    return this.options.connectTimeout;
  }

  get identity(): string {
    return this.options.identity;
  }

  /** The live session, if any, without creating one. */
  peek(): EtcdSession | undefined {
    return this.current?.alive ? this.current : undefined;
  }

  async onModuleInit(): Promise<void> {
    // Fail bootstrap early and clearly instead of at the first lock.
    try {
      await this.session();
      this.watches.openAnchor(this.options.namespace);
    } catch (err) {
      // Nest does not run shutdown hooks after a failed init: close what we opened now.
      this.beginShutdown();
      this.holder.close();
      throw err;
    }
  }

  /**
   * The live session, creating a new one if there is none. Concurrent callers
   * share one creation, which retries transient failures (etcd unreachable, no
   * quorum, open circuit breakers) for as long as any caller still waits.
   *
   * - `session()` (no signal, e.g. bootstrap) gives up after `connectTimeout`
   *   with a non-retryable {@link EtcdUnavailableError}.
   * - `session(signal)` keeps trying until `signal` aborts, then rejects with
   *   `signal.reason`; pass the operation's signal (caller's timeout included).
   *   Passing `shutdownSignal` itself counts as no signal (bounded as above).
   * - `options.patienceMs` bounds either form: after that long without a
   *   session it rejects with a non-retryable EtcdUnavailableError naming the
   *   hosts, whose `cause` is the last etcd error.
   *
   * Errors that retrying cannot fix (authentication, permission) reject at
   * once, typed; shutdown rejects with ShutdownError.
   */
  async session(signal?: AbortSignal, options: { patienceMs?: number } = {}): Promise<EtcdSession> {
    // The shutdown signal is no caller's deadline: with it (tryAcquire) the wait stays bounded.
    const bounded = !signal || signal === this.shutdownController.signal;
    const patienceMs = options.patienceMs ?? (bounded ? this.options.connectTimeout : Infinity);
    const giveUpAt = performance.now() + patienceMs;
    for (;;) {
      if (this.shutdownController.signal.aborted) throw new ShutdownError(Messages.shuttingDown());
      const live = this.peek();
      if (live) return live;
      this.creating ??= this.createWithRetries().finally(() => {
        this.creating = undefined;
      });
      try {
        return await waitForCreation(this.creating, signal, giveUpAt, {
          onGiveUp: () => this.unavailableAfter(patienceMs),
          waiting: (delta) => (this.creationWaiters += delta),
        });
      } catch (err) {
        // The shared creation stopped because every caller before us had given up: start another.
        if (err instanceof NobodyWaitingError) continue;
        throw err;
      }
    }
  }

  /**
   * The last failure of session creation since a session was last created
   * (undefined when the last creation succeeded): lets a caller whose own
   * timeout ran out while session() retried report etcd, not the lock, as the cause.
   */
  get connectFailure(): EtcdUnavailableError | undefined {
    return this.lastCreateFailure;
  }

  /** The verdict for a caller whose patience ran out: etcd counts as unreachable. */
  private unavailableAfter(patienceMs: number): EtcdUnavailableError {
    const hosts = this.holder.hosts;
    const last = this.lastCreateError;
    if (last === undefined) return new EtcdUnavailableError(hosts, Messages.etcdUnreachable(hosts, patienceMs), { retryable: false });
    const mapped = toCoordinationError(last, { hosts, username: this.holder.username, what: 'grant the session lease', timeoutMs: patienceMs });
    return mapped instanceof EtcdUnavailableError
      ? new EtcdUnavailableError(hosts, mapped.message, { cause: last, retryable: false })
      : new EtcdUnavailableError(hosts, Messages.etcdUnreachable(hosts, patienceMs), { cause: last, retryable: false });
  }

  /** Creates a session, retrying transient failures while anyone waits for it. */
  private async createWithRetries(): Promise<EtcdSession> {
    for (let attempt = 0; ; attempt++) {
      if (this.shutdownController.signal.aborted) throw new ShutdownError(Messages.shuttingDown());
      try {
        const session = await this.createSession(attemptTimeout(attempt, this.linkRttMs, this.options.requestTimeout));
        this.lastCreateError = undefined;
        this.lastCreateFailure = undefined;
        return session;
      } catch (err) {
        if (err instanceof CoordinationError && !(err instanceof EtcdUnavailableError)) throw err;
        const mapped = toCoordinationError(err, {
          hosts: this.holder.hosts,
          username: this.holder.username,
          what: 'grant the session lease',
          timeoutMs: attemptTimeout(attempt, this.linkRttMs, this.options.requestTimeout),
        });
        // A failed TLS handshake is a configuration problem: say so now, not after connectTimeout.
        if (!isTransientEtcdError(err) || isTlsFailure(err)) throw mapped instanceof EtcdUnavailableError ? nonRetryable(mapped) : mapped;
        this.instrumentation.etcdError('lease-grant', err, true);
        this.logger.debug(Messages.log.sessionAttemptFailed(attempt + 1, attemptTimeout(attempt, this.linkRttMs, this.options.requestTimeout), redact((err as Error)?.message ?? String(err))));
        this.lastCreateError = err;
        this.lastCreateFailure = mapped instanceof EtcdUnavailableError ? mapped : undefined;
        if (this.creationWaiters === 0) throw new NobodyWaitingError(mapped);
        await sleep(backoffDelay(attempt, 100, 1_000), this.shutdownController.signal).catch(() => undefined);
        if (this.creationWaiters === 0) throw new NobodyWaitingError(mapped);
      }
    }
  }

  private async createSession(timeoutMs: number): Promise<EtcdSession> {
    const { sessionTtl } = this.options;
    // One round trip first, so that dialling (and a slow handshake) is not counted against the TTL.
    const probeStarted = performance.now();
    await this.leases.probe(timeoutMs);
    const sentAt = performance.now();
    const grant = await this.leases.grant(sessionTtl, timeoutMs);
    const roundTrip = Math.max(performance.now() - sentAt, sentAt - probeStarted);
    const session = new EtcdSession(
      this.leases,
      grant.id,
      grant.ttlSeconds,
      sentAt,
      roundTrip,
      this.options.requestTimeout,
      this.instrumentation,
      (s, reason, message) => this.onSessionEnd(s, reason, message),
    );
    if (this.shutdownController.signal.aborted) {
      // Shutdown began while we were granting: give the lease back at once.
      await session.close();
      throw new ShutdownError(Messages.shuttingDown());
    }
    this.current = session;
    session.start();
    this.instrumentation.sessionCreated(session.leaseHex, grant.ttlSeconds);
    this.logger.log(Messages.log.sessionStarted(session.leaseHex, grant.ttlSeconds));
    this.stateSubject.next({ status: 'alive', leaseId: grant.id, leaseHex: session.leaseHex, ttlSeconds: grant.ttlSeconds, since: new Date() });
    return session;
  }

  private onSessionEnd(session: EtcdSession, reason: SessionEndReason, message: string): void {
    this.linkRttMs = session.roundTripMs;
    this.ended.add(session);
    void session.settled().finally(() => this.ended.delete(session));
    if (this.current === session) this.current = undefined;
    this.instrumentation.sessionEnded(session.leaseHex, reason, message);
    if (reason === 'closed') {
      this.logger.log(Messages.log.sessionClosed(session.leaseHex));
      return;
    }
    this.logger.notice(Messages.log.sessionLost(session.leaseHex, message));
    if (!this.shutdownController.signal.aborted) {
      this.stateSubject.next({
        status: 'lost',
        leaseId: session.leaseId,
        leaseHex: session.leaseHex,
        ttlSeconds: session.ttlSeconds,
        reason: message,
        since: new Date(),
      });
    }
  }

  /** Marks the start of shutdown: no new sessions are created after this. */
  beginShutdown(): void {
    if (!this.shutdownController.signal.aborted) this.shutdownController.abort(new ShutdownError(Messages.shuttingDown()));
  }

  async onApplicationShutdown(): Promise<void> {
    this.beginShutdown();
    const creating = this.creating;
    if (creating) await creating.catch(() => undefined);
    const last = this.current;
    if (last) await last.close();
    await Promise.allSettled([...this.ended].map((s) => s.settled()));
    // Cancel every watch of ours (waits, observers, the anchor) and let the cancellations
    // finish, so a client the user owns is left without any watch of ours.
    await this.watches.close(this.options.requestTimeout);
    this.stateSubject.next({
      status: 'closed',
      leaseId: last?.leaseId,
      leaseHex: last?.leaseHex,
      ttlSeconds: last?.ttlSeconds,
      since: new Date(),
    });
    this.stateSubject.complete();
    this.holder.close();
    this.instrumentation.close();
  }
}
