import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import type { Logger } from '@nestjs/common';
import type { Etcd3, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse, IDuplexStream } from 'etcd3';
import { leaseHex } from '../etcd/keys.js';
import { SessionLostError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

type KeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** Why a session ended. */
export type SessionEndReason = 'deadline' | 'lease-gone' | 'history-reset' | 'closed';

/**
 * One etcd lease, kept alive, with a client-side deadline.
 *
 * The deadline is `send time of the last acknowledged keepalive + granted TTL`.
 * etcd renews the lease when it *receives* the keepalive, which is after we
 * sent it, so the server cannot expire the lease before our deadline: when the
 * deadline passes we declare the session lost and abort `signal` *before* any
 * other client could be granted our locks. (etcd3's own Lease waits 2 x TTL.)
 */
export class EtcdSession {
  readonly leaseHex: string;
  private readonly controller = new AbortController();
  private deadline: number;
  private keepAliveTimer?: NodeJS.Timeout;
  private deadlineTimer?: NodeJS.Timeout;
  private stream?: KeepAliveStream;
  private opening = false;
  private sendTimes: number[] = [];
  private ended?: SessionEndReason;
  private revokePromise?: Promise<void>;

  constructor(
    private readonly client: Etcd3,
    readonly leaseId: bigint,
    readonly ttlSeconds: number,
    grantSentAt: number,
    private readonly requestTimeoutMs: number,
    private readonly logger: Logger,
    private readonly onEnd: (session: EtcdSession, reason: SessionEndReason, message: string) => void,
  ) {
    this.leaseHex = leaseHex(leaseId);
    this.deadline = grantSentAt + ttlSeconds * 1000 - this.safetyMarginMs;
    // Every hold and waiter of the session listens to its signal: many listeners are expected.
    setMaxListeners(0, this.controller.signal);
  }

  /** Aborts when the session ends (lost or closed); the reason is a SessionLostError or ShutdownError. */
  get signal(): AbortSignal {
    return this.controller.signal;
  }

  /**
   * We declare the loss this much before `send time + TTL`, so that timer
   * jitter or a briefly busy event loop cannot make the signal late: 10% of
   * the TTL, at most 500 ms. (Keepalives go out every TTL/3, so only missed
   * keepalives ever bring us this close.)
   */
  private get safetyMarginMs(): number {
    return Math.min(500, this.ttlSeconds * 100);
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

  start(): void {
    this.armDeadline();
    this.scheduleKeepAlive(this.keepAliveInterval());
  }

  private keepAliveInterval(): number {
    return Math.max(200, Math.floor((this.ttlSeconds * 1000) / 3));
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

  private scheduleKeepAlive(delay: number): void {
    clearTimeout(this.keepAliveTimer);
    if (this.ended) return;
    this.keepAliveTimer = setTimeout(() => void this.sendKeepAlive(), delay);
    this.keepAliveTimer.unref();
  }

  private async sendKeepAlive(): Promise<void> {
    if (this.ended) return;
    try {
      const stream = await this.ensureStream();
      if (!stream || this.ended) return;
      this.sendTimes.push(performance.now());
      stream.write({ ID: this.leaseId.toString() });
      this.scheduleKeepAlive(this.keepAliveInterval());
    } catch (err) {
      this.logger.warn(Messages.log.keepAliveFailed(this.leaseHex, (err as Error).message));
      this.dropStream();
      // Retry soon: every missed keepalive brings the deadline closer.
      this.scheduleKeepAlive(Math.min(500, this.keepAliveInterval()));
    }
  }

  private async ensureStream(): Promise<KeepAliveStream | undefined> {
    if (this.stream) return this.stream;
    if (this.opening) return undefined;
    this.opening = true;
    try {
      const stream = await this.client.leaseClient.leaseKeepAlive();
      if (this.ended) {
        endStream(stream);
        return undefined;
      }
      this.sendTimes = [];
      stream.on('data', (res: ILeaseKeepAliveResponse) => this.onKeepAliveResponse(stream, res));
      const onBroken = (err?: Error) => {
        if (this.stream !== stream) return;
        if (!this.ended) this.logger.warn(Messages.log.keepAliveFailed(this.leaseHex, err?.message ?? 'stream ended'));
        this.dropStream();
        this.scheduleKeepAlive(Math.min(500, this.keepAliveInterval()));
      };
      stream.on('error', onBroken);
      stream.on('end', () => onBroken());
      this.stream = stream;
      return stream;
    } finally {
      this.opening = false;
    }
  }

  private onKeepAliveResponse(stream: KeepAliveStream, res: ILeaseKeepAliveResponse): void {
    if (this.stream !== stream || this.ended) return;
    const sentAt = this.sendTimes.shift();
    const ttl = Number(res.TTL);
    if (!(ttl > 0)) {
      this.lose('lease-gone', 'etcd reports the lease as expired or revoked');
      return;
    }
    if (sentAt === undefined) return;
    const candidate = sentAt + ttl * 1000 - this.safetyMarginMs;
    if (candidate > this.deadline) {
      this.deadline = candidate;
      this.armDeadline();
    }
  }

  private dropStream(): void {
    const stream = this.stream;
    this.stream = undefined;
    this.sendTimes = [];
    if (stream) endStream(stream);
  }

  private stopBackground(): void {
    clearTimeout(this.keepAliveTimer);
    clearTimeout(this.deadlineTimer);
    this.keepAliveTimer = undefined;
    this.deadlineTimer = undefined;
    this.dropStream();
  }

  /**
   * Declares the session lost: aborts `signal` at once (with `error`, or a
   * SessionLostError), then revokes the lease in the background.
   */
  lose(reason: Exclude<SessionEndReason, 'closed'>, message: string, error?: SessionLostError): void {
    if (this.ended) return;
    this.ended = reason;
    this.stopBackground();
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
      this.stopBackground();
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
      await this.client.leaseClient.leaseRevoke(
        { ID: this.leaseId.toString() },
        { deadline: new Date(Date.now() + this.requestTimeoutMs) },
      );
    } catch {
      // Unreachable or already expired: the lease ends by itself within its TTL.
    }
  }

  /** Throws the session's end reason if it is no longer alive. */
  throwIfEnded(): void {
    if (!this.alive) throw this.signal.reason;
  }
}

function endStream(stream: KeepAliveStream): void {
  try {
    const cancellable = stream as unknown as { cancel?: () => void };
    if (typeof cancellable.cancel === 'function') cancellable.cancel();
    else stream.end();
  } catch {
    // Already closed.
  }
}
