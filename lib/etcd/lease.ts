import type { Etcd3, IDuplexStream, ILeaseKeepAliveRequest, ILeaseKeepAliveResponse } from 'etcd3';
import { isTransientEtcdError } from './etcd-errors.js';

type RawKeepAliveStream = IDuplexStream<ILeaseKeepAliveRequest, ILeaseKeepAliveResponse>;

/** A granted lease: ids are BigInt (they exceed 2^53). */
export interface GrantedLease {
  id: bigint;
  ttlSeconds: number;
}

/** Events of one keepalive stream; each fires at most once except `answer`. */
export interface KeepAliveHandlers {
  /** etcd answered a keepalive: the lease's remaining TTL in seconds (0 or less: the lease is gone). */
  answer(ttlSeconds: number): void;
  /** The stream failed or ended; it is unusable from now on. */
  broken(reason: string): void;
}

/** One LeaseKeepAlive stream: requests go out in order and are answered in order. */
export interface KeepAliveStream {
  send(leaseId: bigint): void;
  /**
   * Ends the stream (idempotent); no handler fires afterwards. With
   * `resetConnection`, etcd3 also drops its connections to the host (the
   * next call dials a new one): for a stream that stopped answering.
   */
  close(resetConnection?: boolean): void;
}

/**
 * The lease calls of the session, the only place outside lib/etcd that
 * needs them: LeaseGrant, the LeaseKeepAlive stream and LeaseRevoke, over
 * the module's etcd3 client. Keeps etcd3's decimal-string ids out of the
 * session code.
 */
export class EtcdLeases {
  constructor(private readonly client: Etcd3) {}

  async grant(ttlSeconds: number, timeoutMs: number): Promise<GrantedLease> {
    const res = await this.client.leaseClient.leaseGrant({ TTL: ttlSeconds }, { deadline: deadlineIn(timeoutMs) });
    return { id: BigInt(res.ID), ttlSeconds: Number(res.TTL) };
  }

  /**
   * One round trip on the lease service's connection, without side effects
   * (the time-to-live of lease 0, which never exists). Resolves once etcd
   * answered, whatever it answered; rejects only when it could not be reached.
   * Used before a grant so that dialling a new connection does not eat into
   * the new lease's TTL (its deadline counts from the grant's send time).
   */
  async probe(timeoutMs: number): Promise<void> {
    try {
      await this.client.leaseClient.leaseTimeToLive({ ID: '0' }, { deadline: deadlineIn(timeoutMs) });
    } catch (err) {
      if (isTransientEtcdError(err)) throw err;
    }
  }

  /** Best effort is the caller's business: this rejects on any failure. */
  async revoke(leaseId: bigint, timeoutMs: number): Promise<void> {
    await this.client.leaseClient.leaseRevoke({ ID: leaseId.toString() }, { deadline: deadlineIn(timeoutMs) });
  }

  async openKeepAlive(handlers: KeepAliveHandlers): Promise<KeepAliveStream> {
    const raw: RawKeepAliveStream = await this.client.leaseClient.leaseKeepAlive();
    let open = true;
    const broken = (reason: string) => {
      if (!open) return;
      open = false;
      handlers.broken(reason);
    };
    raw.on('data', (res: ILeaseKeepAliveResponse) => {
      if (open) handlers.answer(Number(res.TTL));
    });
    raw.on('error', (err: Error) => broken(err?.message ?? 'stream failed'));
    raw.on('end', () => broken('stream ended'));
    return {
      send: (leaseId) => {
        if (open) raw.write({ ID: leaseId.toString() });
      },
      close: (resetConnection = false) => {
        open = false;
        endRawStream(raw, resetConnection);
      },
    };
  }
}

function deadlineIn(ms: number): Date {
  return new Date(Date.now() + Math.max(1, ms));
}

/**
 * etcd3 reports an error of a keepalive stream that is still writable to its
 * connection pool, which then closes every channel to that host: a cancel
 * while writable resets the connection, ending the writable side first does not.
 */
function endRawStream(stream: RawKeepAliveStream, resetConnection: boolean): void {
  // Errors after close (the CANCELLED status of our own cancel) must not become unhandled.
  stream.on('error', () => undefined);
  try {
    if (!resetConnection) stream.end();
    const cancellable = stream as unknown as { cancel?: () => void };
    if (typeof cancellable.cancel === 'function') cancellable.cancel();
    else stream.end();
  } catch {
    // Already closed.
  }
}
