import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
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
import { EtcdSession, type SessionEndReason } from './etcd-session.js';
import { backoffDelay, sleep } from '../util/abort.js';

function nonRetryable(err: EtcdUnavailableError): EtcdUnavailableError {
  return err.retryable ? new EtcdUnavailableError(err.hosts, err.message, { cause: err.cause, retryable: false }) : err;
}

/** The shared creation stopped retrying because nobody waited for it any more (internal). */
class NobodyWaitingError extends Error {
  constructor(readonly last: Error) {
    super(last.message);
  }
}

/** Observable state of the etcd session, for logging and health checks. */
export interface SessionState {
  /** `connecting`: no session yet; `alive`: lease kept alive; `lost`: the last lease expired (a new one is made on demand); `closed`: shut down. */
  status: 'connecting' | 'alive' | 'lost' | 'closed';
  /** Lease id of the current (or last) session. */
  leaseId?: bigint;
  /** Lease id as etcd's key suffix (lowercase hex). */
  leaseHex?: string;
  /** Granted TTL in seconds. */
  ttlSeconds?: number;
  /** Why the last session ended. */
  reason?: string;
  /** Wall-clock time of this state change. */
  since: Date;
}

/**
 * Owns the application's single etcd session (lease): creates it at
 * bootstrap (failing bootstrap, bounded by `connectTimeout`, when etcd is
 * unreachable), replaces it on demand after a loss (retrying for as long as
 * the caller waits, see {@link SessionService.session}), and revokes it on
 * shutdown. Every lock and campaign of the application shares it.
 */
@Injectable()
export class SessionService implements OnModuleInit, OnApplicationShutdown {
  private readonly logger = new Logger('Coordination');
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
        return await this.awaitCreation(this.creating, signal, giveUpAt, patienceMs);
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

  private awaitCreation(creation: Promise<EtcdSession>, signal: AbortSignal | undefined, giveUpAt: number, patienceMs: number): Promise<EtcdSession> {
    this.creationWaiters++;
    return new Promise<EtcdSession>((resolve, reject) => {
      let timer: NodeJS.Timeout | undefined;
      const settle = (fn: () => void) => {
        clearTimeout(timer);
        signal?.removeEventListener('abort', onAbort);
        this.creationWaiters--;
        fn();
      };
      const onAbort = () => settle(() => reject(signal!.reason));
      if (signal?.aborted) return onAbort();
      signal?.addEventListener('abort', onAbort, { once: true });
      if (Number.isFinite(giveUpAt)) {
        timer = setTimeout(() => settle(() => reject(this.unavailableAfter(patienceMs))), Math.max(0, giveUpAt - performance.now()));
      }
      creation.then(
        (session) => settle(() => resolve(session)),
        (err) => settle(() => reject(err)),
      );
    });
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

  /**
   * The timeout of one creation attempt. A partition can leave grpc-js with a
   * connection whose HTTP/2 handshake was lost: it waits on it forever, and
   * every call on it until its deadline. A failed call makes etcd3 drop the
   * connection, so short attempts find a healed network soon. They grow (x2,
   * from 1 s or 3 x the last measured round trip, up to requestTimeout) for
   * slow links, where dialling alone takes two round trips (etcd reads the
   * client's preface before it answers), and start short again after four,
   * so a long outage never leaves us waiting out a long attempt after the heal.
   */
  private attemptTimeout(attempt: number): number {
    // Before the first session nothing is known about the link, and a lost handshake is
    // unlikely: give the first attempt all of requestTimeout (a slow link needs it).
    if (this.linkRttMs === undefined) return attempt === 0 ? this.options.requestTimeout : Math.min(this.options.requestTimeout, 1_000 * 2 ** (attempt % 4));
    const base = Math.max(1_000, 3 * this.linkRttMs);
    return Math.min(this.options.requestTimeout, base * 2 ** (attempt % 4));
  }

  /** Creates a session, retrying transient failures while anyone waits for it. */
  private async createWithRetries(): Promise<EtcdSession> {
    for (let attempt = 0; ; attempt++) {
      if (this.shutdownController.signal.aborted) throw new ShutdownError(Messages.shuttingDown());
      try {
        const session = await this.createSession(this.attemptTimeout(attempt));
        this.lastCreateError = undefined;
        this.lastCreateFailure = undefined;
        return session;
      } catch (err) {
        if (err instanceof CoordinationError && !(err instanceof EtcdUnavailableError)) throw err;
        const mapped = toCoordinationError(err, {
          hosts: this.holder.hosts,
          username: this.holder.username,
          what: 'grant the session lease',
          timeoutMs: this.attemptTimeout(attempt),
        });
        // A failed TLS handshake is a configuration problem: say so now, not after connectTimeout.
        if (!isTransientEtcdError(err) || isTlsFailure(err)) throw mapped instanceof EtcdUnavailableError ? nonRetryable(mapped) : mapped;
        this.logger.debug(Messages.log.sessionAttemptFailed(attempt + 1, this.attemptTimeout(attempt), redact((err as Error)?.message ?? String(err))));
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
      this.logger,
      (s, reason, message) => this.onSessionEnd(s, reason, message),
    );
    if (this.shutdownController.signal.aborted) {
      // Shutdown began while we were granting: give the lease back at once.
      await session.close();
      throw new ShutdownError(Messages.shuttingDown());
    }
    this.current = session;
    session.start();
    this.logger.log(Messages.log.sessionStarted(session.leaseHex, grant.ttlSeconds));
    this.stateSubject.next({ status: 'alive', leaseId: grant.id, leaseHex: session.leaseHex, ttlSeconds: grant.ttlSeconds, since: new Date() });
    return session;
  }

  private onSessionEnd(session: EtcdSession, reason: SessionEndReason, message: string): void {
    this.linkRttMs = session.roundTripMs;
    this.ended.add(session);
    void session.settled().finally(() => this.ended.delete(session));
    if (this.current === session) this.current = undefined;
    if (reason === 'closed') {
      this.logger.log(Messages.log.sessionClosed(session.leaseHex));
      return;
    }
    this.logger.warn(Messages.log.sessionLost(session.leaseHex, message));
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
  }
}
