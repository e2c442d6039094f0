import { setMaxListeners } from 'node:events';
import { Injectable, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { BehaviorSubject, type Observable } from 'rxjs';
import { leaseHex } from '../etcd/keys.js';
import { abortHandlers } from '../util/abort.js';
import type { EtcdSession } from '../session/etcd-session.js';
import type { SessionService, SessionState } from '../session/session.service.js';
import { SessionLostError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, TestingMessages } from '../coordination.messages.js';
import type { FakeStore } from './fake-store.js';

/** What holds and the reused services read of a session (internal). */
export type SessionSurface = Pick<EtcdSession, 'leaseId' | 'leaseHex' | 'ttlSeconds' | 'signal' | 'alive' | 'throwIfEnded' | 'whenEnded'>;

/** TTL the fake sessions report (they never expire by themselves). */
const FAKE_TTL_SECONDS = 10;

/** A fake etcd session: a lease id, and a signal that aborts when it is expired or closed (internal). */
export class FakeSession implements SessionSurface {
  readonly leaseHex: string;
  readonly ttlSeconds = FAKE_TTL_SECONDS;
  private readonly controller = new AbortController();

  private readonly endHandlers = abortHandlers(this.controller.signal);

  constructor(readonly leaseId: bigint) {
    this.leaseHex = leaseHex(leaseId);
    setMaxListeners(0, this.controller.signal);
  }

  /** As `EtcdSession.whenEnded`. */
  whenEnded(handler: () => void): () => void {
    return this.endHandlers(handler);
  }

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get alive(): boolean {
    return !this.controller.signal.aborted;
  }

  throwIfEnded(): void {
    if (!this.alive) throw this.controller.signal.reason;
  }

  /** Ends the session with `reason` (SessionLostError or ShutdownError). */
  end(reason: unknown): void {
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  /** As the library's services see it. */
  asEtcdSession(): EtcdSession {
    return this as unknown as EtcdSession;
  }
}

/** The members of `SessionService` that the reused services and users read. */
export type SessionServiceSurface = Pick<
  SessionService,
  'state$' | 'state' | 'shutdownSignal' | 'connectTimeout' | 'identity' | 'peek' | 'session' | 'beginShutdown' | 'onApplicationShutdown'
>;

let leaseBase = 0x694d_0000_0000n + BigInt(Math.floor(Math.random() * 0xffff)) * 0x1_0000n;

/**
 * The testing kit's `SessionService` (provided under that token): one fake
 * session at a time, created on demand, expired by
 * `FakeCoordination.expireSession()` (its keys are deleted, as etcd does when
 * a lease expires), closed on shutdown. Same `state$` sequence as the real
 * one: `alive` -> `lost` -> `alive` ... -> `closed`.
 */
@Injectable()
export class FakeSessionService implements SessionServiceSurface, OnModuleInit, OnApplicationShutdown {
  private current?: FakeSession;
  private closed = false;
  private readonly shutdownController = new AbortController();
  private readonly stateSubject = new BehaviorSubject<SessionState>({ status: 'connecting', since: new Date() });

  constructor(
    private readonly store: FakeStore,
    readonly identity: string,
  ) {
    setMaxListeners(0, this.shutdownController.signal);
  }

  get state$(): Observable<SessionState> {
    return this.stateSubject.asObservable();
  }

  get state(): SessionState {
    return this.stateSubject.value;
  }

  get shutdownSignal(): AbortSignal {
    return this.shutdownController.signal;
  }

  /** Nothing to connect to: 1 s bounds the few waits that use it. */
  get connectTimeout(): number {
    return 1_000;
  }

  /** Like the real service: the session exists once the application has started. */
  async onModuleInit(): Promise<void> {
    await this.session();
  }

  peek(): EtcdSession | undefined {
    return this.current?.alive ? this.current.asEtcdSession() : undefined;
  }

  async session(signal?: AbortSignal): Promise<EtcdSession> {
    if (this.shutdownController.signal.aborted) throw new ShutdownError(Messages.shuttingDown());
    if (signal?.aborted) throw signal.reason;
    const live = this.peek();
    if (live) return live;
    const session = new FakeSession(++leaseBase);
    this.current = session;
    this.stateSubject.next({ status: 'alive', leaseId: session.leaseId, leaseHex: session.leaseHex, ttlSeconds: session.ttlSeconds, since: new Date() });
    return session.asEtcdSession();
  }

  /** The live fake session, if any (internal). */
  get live(): FakeSession | undefined {
    return this.current?.alive ? this.current : undefined;
  }

  /**
   * Expires the current session: every hold's signal aborts with a
   * SessionLostError first (as at the library's client-side deadline), then
   * the session's keys are deleted (as etcd does when the lease expires).
   * The next acquire or campaign makes a new session.
   */
  expire(): boolean {
    const session = this.live;
    if (!session) return false;
    const message = TestingMessages.sessionExpired();
    session.end(new SessionLostError(Messages.sessionLost(session.leaseHex, message)));
    this.current = undefined;
    this.store.deleteLease(session.leaseId);
    this.stateSubject.next({ status: 'lost', leaseId: session.leaseId, leaseHex: session.leaseHex, ttlSeconds: session.ttlSeconds, reason: message, since: new Date() });
    return true;
  }

  beginShutdown(): void {
    if (!this.shutdownController.signal.aborted) this.shutdownController.abort(new ShutdownError(Messages.shuttingDown()));
  }

  async onApplicationShutdown(): Promise<void> {
    this.beginShutdown();
    const last = this.current;
    if (last) {
      last.end(new ShutdownError(Messages.sessionClosed()));
      this.store.deleteLease(last.leaseId);
    }
    this.current = undefined;
    if (this.closed) return;
    this.closed = true;
    this.stateSubject.next({ status: 'closed', leaseId: last?.leaseId, leaseHex: last?.leaseHex, ttlSeconds: last?.ttlSeconds, since: new Date() });
    this.stateSubject.complete();
  }
}
