import { performance } from 'node:perf_hooks';
import { Inject, Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { setMaxListeners } from 'node:events';
import { BehaviorSubject, type Observable } from 'rxjs';
import { ETCD_CLIENT_HOLDER, RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import type { EtcdClientHolder } from '../etcd/etcd-client.js';
import { isTransientEtcdError, toCoordinationError } from '../etcd/etcd-errors.js';
import { EtcdWatches } from '../etcd/watch.js';
import { HistoryGuard } from '../etcd/history-guard.js';
import { EtcdUnavailableError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { EtcdSession, type SessionEndReason } from './etcd-session.js';
import { backoffDelay, raceSignal, sleep } from '../util/abort.js';

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
 * unreachable), replaces it on demand after a loss, and revokes it on
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

  constructor(
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
    @Inject(ETCD_CLIENT_HOLDER) private readonly holder: EtcdClientHolder,
    private readonly watches: EtcdWatches,
    history: HistoryGuard,
  ) {
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
   * The live session, creating a new one (bounded by `connectTimeout`) if
   * there is none. Concurrent callers share one creation.
   */
  async session(signal?: AbortSignal): Promise<EtcdSession> {
    if (this.shutdownController.signal.aborted) throw new ShutdownError(Messages.shuttingDown());
    const live = this.peek();
    if (live) return live;
    this.creating ??= this.createSession().finally(() => {
      this.creating = undefined;
    });
    if (!signal) return this.creating;
    return raceSignal(this.creating, signal);
  }

  /**
   * LeaseGrant, retried on transient errors until `deadline` (monotonic ms):
   * a gRPC channel that is reconnecting fails calls at once instead of
   * waiting, and that must not count as "etcd unreachable" before connectTimeout.
   */
  private async grantLease(ttl: number, deadline: number): Promise<{ ID: string; TTL: string; sentAt: number }> {
    for (let attempt = 0; ; attempt++) {
      // The session deadline counts from the send time of the attempt that succeeded.
      const sentAt = performance.now();
      const remaining = deadline - sentAt;
      try {
        const grant = await this.holder.client.leaseClient.leaseGrant({ TTL: ttl }, { deadline: new Date(Date.now() + Math.max(1, remaining)) });
        return { ID: grant.ID, TTL: grant.TTL, sentAt };
      } catch (err) {
        const pause = backoffDelay(attempt, 100, 1_000);
        if (!isTransientEtcdError(err) || performance.now() + pause >= deadline || this.shutdownController.signal.aborted) throw err;
        await sleep(pause);
      }
    }
  }

  private async createSession(): Promise<EtcdSession> {
    const { connectTimeout, sessionTtl } = this.options;
    const startedAt = performance.now();
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(new EtcdUnavailableError(this.holder.hosts, Messages.etcdUnreachable(this.holder.hosts, connectTimeout), { retryable: false })),
        connectTimeout,
      );
    });
    let grant: { ID: string; TTL: string; sentAt: number };
    try {
      grant = await Promise.race([this.grantLease(sessionTtl, startedAt + connectTimeout), timeout]);
    } catch (err) {
      const mapped = toCoordinationError(err, {
        hosts: this.holder.hosts,
        username: this.holder.username,
        what: 'grant the session lease',
        timeoutMs: connectTimeout,
      });
      // We retried for connectTimeout: callers must not retry this again.
      throw mapped instanceof EtcdUnavailableError && mapped.retryable
        ? new EtcdUnavailableError(mapped.hosts, mapped.message, { cause: mapped.cause, retryable: false })
        : mapped;
    } finally {
      clearTimeout(timer);
    }
    const leaseId = BigInt(grant.ID);
    const ttl = Number(grant.TTL);
    const session = new EtcdSession(
      this.holder.client,
      leaseId,
      ttl,
      grant.sentAt,
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
    this.logger.log(Messages.log.sessionStarted(session.leaseHex, ttl));
    this.stateSubject.next({ status: 'alive', leaseId, leaseHex: session.leaseHex, ttlSeconds: ttl, since: new Date() });
    return session;
  }

  private onSessionEnd(session: EtcdSession, reason: SessionEndReason, message: string): void {
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
