import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Instrumentation } from '../observability/instrumentation.js';
import { leaseHex } from '../etcd/keys.js';
import type { EtcdLeases, KeepAliveStream } from '../etcd/lease.js';
import { SessionLostError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { keepAlivePlan, type KeepAlivePlan } from './keepalive-plan.js';
import { abortHandlers } from '../util/abort.js';

/** Why a session ended. */
export type SessionEndReason = 'deadline' | 'lease-gone' | 'history-reset' | 'closed';

export { keepAlivePlan, type KeepAlivePlan } from './keepalive-plan.js';

/** How many recent round trips the estimate remembers (the slowest counts). */
const RTT_SAMPLES = 5;

/**
 * One etcd lease, kept alive, with a client-side deadline.
 *
 * The deadline is `send time of the last acknowledged keepalive + granted TTL`
 * (minus a margin). etcd renews the lease when it *receives* the keepalive,
 * which is after we sent it, so the server cannot expire the lease before our
 * deadline: when the deadline passes we declare the session lost and abort
 * `signal` *before* any other client could be granted our locks. (etcd3's own
 * Lease waits 2 x TTL.)
 */
export class EtcdSession {
  readonly leaseHex: string;
  private readonly controller = new AbortController();
  private readonly plan: KeepAlivePlan;
  private deadline: number;
  private keepAliveTimer?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private stream?: KeepAliveStream;
  private opening = false;
  /** Send times of the keepalives on the current stream not answered yet, oldest first. */
  private unanswered: number[] = [];
  private lastSentAt = -Infinity;
  private readonly rttSamples: number[] = [];
  private ended?: SessionEndReason;
  private revokePromise?: Promise<void>;

  constructor(
    private readonly leases: EtcdLeases,
    readonly leaseId: bigint,
    readonly ttlSeconds: number,
    grantSentAt: number,
    /** Round trip of the grant (and of the request before it): the first RTT estimate. */
    grantRoundTripMs: number,
    private readonly requestTimeoutMs: number,
    private readonly instrumentation: Instrumentation,
    private readonly onEnd: (session: EtcdSession, reason: SessionEndReason, message: string) => void,
  ) {
    this.leaseHex = leaseHex(leaseId);
    this.plan = keepAlivePlan(ttlSeconds);
    this.deadline = grantSentAt + ttlSeconds * 1000 - this.plan.marginMs;
    this.rttSamples.push(grantRoundTripMs);
    // Every waiter of the session listens to its signal: many listeners are expected.
    setMaxListeners(0, this.controller.signal);
  }

  private readonly endHandlers = abortHandlers(this.controller.signal);

  /**
   * Calls `handler` once when the session ends (at once if it has ended);
   * returns the function that unregisters it. Holds use this rather than an
   * abort listener each (see abortHandlers).
   */
  whenEnded(handler: () => void): () => void {
    return this.endHandlers(handler);
  }

  /** Aborts when the session ends (lost or closed); the reason is a SessionLostError or ShutdownError. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /** True while the session is alive: checked synchronously against the deadline. */
  get alive(): boolean {
    if (this.ended) return false;
    if (performance.now() >= this.deadline) {
      this.lose('deadline', 'no keepalive was acknowledged within the lease TTL');
      return false;
    }
    return true;
  }

  get endReason(): SessionEndReason | undefined {
    return this.ended;
  }

  /** The slowest recent keepalive (or grant) round trip, in ms. */
  get roundTripMs(): number {
    return Math.max(0, ...this.rttSamples);
  }

  /** Milliseconds left before the client-side deadline (negative once past). */
  get remainingMs(): number {
    return this.deadline - performance.now();
  }

  start(): void {
    this.armDeadline();
    // The grant's answer took one round trip of the TTL already: the first keepalive goes now.
    this.scheduleKeepAlive(0);
  }

  /** The RTT to plan with: the slowest recent one, or longer if an answer is overdue. */
  private rttEstimate(now: number): number {
    const oldest = this.unanswered[0];
    return Math.max(this.roundTripMs, oldest === undefined ? 0 : now - oldest);
  }

  /** When the next keepalive should go out (performance.now() time). */
  private nextSendAt(now: number): number {
    const { periodMs, minGapMs, rttFactor, marginMs } = this.plan;
    const rtt = this.rttEstimate(now);
    const gap = Math.max(minGapMs, Math.min(periodMs, this.ttlSeconds * 1000 - marginMs - rttFactor * rtt));
    const byGap = this.lastSentAt + gap;
    const byDeadline = this.deadline - rttFactor * rtt;
    return Math.max(this.lastSentAt + minGapMs, Math.min(byGap, byDeadline));
  }

  private armDeadline(): void {
    clearTimeout(this.deadlineTimer);
    const wait = Math.max(0, this.deadline - performance.now());
    this.deadlineTimer = setTimeout(() => {
      if (performance.now() >= this.deadline) {
        this.lose('deadline', 'no keepalive was acknowledged within the lease TTL');
      } else {
        this.armDeadline();
      }
    }, wait);
    this.deadlineTimer.unref();
  }

  private scheduleKeepAlive(delay?: number): void {
    clearTimeout(this.keepAliveTimer);
    if (this.ended) return;
    const now = performance.now();
    const wait = delay ?? Math.max(0, this.nextSendAt(now) - now);
    this.keepAliveTimer = setTimeout(() => void this.sendKeepAlive(), wait);
    this.keepAliveTimer.unref();
  }

  private async sendKeepAlive(): Promise<void> {
    if (this.ended) return;
    try {
      const stream = await this.ensureStream();
      if (!stream || this.ended) return;
      const now = performance.now();
      this.unanswered.push(now);
      this.lastSentAt = now;
      stream.send(this.leaseId);
      this.scheduleKeepAlive();
    } catch (err) {
      this.keepAliveFailed(err, (err as Error).message);
      this.dropStream(false);
      // Retry soon: every missed keepalive brings the deadline closer.
      this.scheduleKeepAlive(Math.min(500, this.plan.periodMs));
    }
  }

  private async ensureStream(): Promise<KeepAliveStream | undefined> {
    if (this.stream) return this.stream;
    if (this.opening) return undefined;
    this.opening = true;
    try {
      let stream: KeepAliveStream | undefined;
      stream = await this.leases.openKeepAlive({
        answer: (ttl) => {
          if (stream && this.stream === stream) this.onAnswer(ttl);
        },
        broken: (reason) => {
          if (!stream || this.stream !== stream) return;
          if (!this.ended) this.keepAliveFailed(reason, reason);
          this.dropStream(false);
          this.scheduleKeepAlive(Math.min(500, this.plan.periodMs));
        },
      });
      if (this.ended) {
        stream.close();
        return undefined;
      }
      this.unanswered = [];
      this.stream = stream;
      return stream;
    } finally {
      this.opening = false;
    }
  }

  private keepAliveFailed(err: unknown, reason: string): void {
    this.instrumentation.etcdError('keepalive', err, true);
    this.instrumentation.logger.warn(Messages.log.keepAliveFailed(this.leaseHex, reason));
  }

  private onAnswer(ttl: number): void {
    if (this.ended) return;
    this.instrumentation.etcdAnswered();
    const sentAt = this.unanswered.shift();
    if (!(ttl > 0)) {
      this.lose('lease-gone', 'etcd reports the lease as expired or revoked');
      return;
    }
    if (sentAt === undefined) return;
    const now = performance.now();
    this.rttSamples.push(now - sentAt);
    if (this.rttSamples.length > RTT_SAMPLES) this.rttSamples.shift();
    const candidate = sentAt + ttl * 1000 - this.plan.marginMs;
    if (candidate > this.deadline) {
      this.deadline = candidate;
      this.armDeadline();
    }
    this.scheduleKeepAlive();
  }

  /** `resetConnection`: also make etcd3 drop the host's connection (for a stuck one). */
  private dropStream(resetConnection: boolean): void {
    const stream = this.stream;
    this.stream = undefined;
    this.unanswered = [];
    if (stream) stream.close(resetConnection);
  }

  private stopBackground(resetConnection: boolean): void {
    clearTimeout(this.keepAliveTimer);
    clearTimeout(this.deadlineTimer);
    this.keepAliveTimer = undefined;
    this.deadlineTimer = undefined;
    this.dropStream(resetConnection);
  }

  /**
   * Declares the session lost: aborts `signal` at once (with `error`, or a
   * SessionLostError), then revokes the lease in the background.
   */
  lose(reason: Exclude<SessionEndReason, 'closed'>, message: string, error?: SessionLostError): void {
    if (this.ended) return;
    this.ended = reason;
    // No answer within the TTL: the connection is suspect, the next session starts on a new one.
    this.stopBackground(reason === 'deadline');
    if (reason === 'deadline') this.instrumentation.etcdUnanswered(message); // before the holds hear of it
    this.controller.abort(error ?? new SessionLostError(Messages.sessionLost(this.leaseHex, message)));
    this.onEnd(this, reason, message);
    // If the server still has the lease (we were only slow), give its keys up:
    // the running code was already told it no longer holds them.
    this.revokePromise = this.revoke();
  }

  /** Ends the session on purpose: aborts `signal`, then revokes the lease (deleting every key on it). */
  async close(): Promise<void> {
    if (!this.ended) {
      this.ended = 'closed';
      this.stopBackground(false);
      this.controller.abort(new ShutdownError(Messages.sessionClosed()));
      this.onEnd(this, 'closed', 'closed');
      this.revokePromise = this.revoke();
    }
    await this.revokePromise;
  }

  /** Resolves once a pending revoke (after loss or close) has finished or given up. */
  async settled(): Promise<void> {
    await this.revokePromise;
  }

  private async revoke(): Promise<void> {
    try {
      await this.leases.revoke(this.leaseId, this.requestTimeoutMs);
    } catch {
      // Unreachable or already expired: the lease ends by itself within its TTL.
    }
  }

  /** Throws the session's end reason if it is no longer alive. */
  throwIfEnded(): void {
    if (!this.alive) throw this.signal.reason;
  }
}
