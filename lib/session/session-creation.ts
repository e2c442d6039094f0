import { performance } from 'node:perf_hooks';
import { EtcdUnavailableError } from '../errors/coordination.errors.js';
import type { EtcdSession } from './etcd-session.js';

export function nonRetryable(err: EtcdUnavailableError): EtcdUnavailableError {
  return err.retryable ? new EtcdUnavailableError(err.hosts, err.message, { cause: err.cause, retryable: false }) : err;
}

/** The shared creation stopped retrying because nobody waited for it any more (internal). */
export class NobodyWaitingError extends Error {
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
 * Waits for the shared session creation on behalf of one caller: until it
 * settles, the caller's signal aborts, or its patience (`giveUpAt`,
 * performance.now() time) runs out. `waiting(+1/-1)` counts the callers, so
 * the creation can stop retrying when nobody waits any more.
 */
export function waitForCreation(
  creation: Promise<EtcdSession>,
  signal: AbortSignal | undefined,
  giveUpAt: number,
  hooks: { onGiveUp: () => Error; waiting: (delta: 1 | -1) => void },
): Promise<EtcdSession> {
  hooks.waiting(1);
  return new Promise<EtcdSession>((resolve, reject) => {
    let timer: NodeJS.Timeout | undefined;
    const settle = (fn: () => void) => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', onAbort);
      hooks.waiting(-1);
      fn();
    };
    const onAbort = () => settle(() => reject(signal!.reason));
    if (signal?.aborted) return onAbort();
    signal?.addEventListener('abort', onAbort, { once: true });
    if (Number.isFinite(giveUpAt)) {
      timer = setTimeout(() => settle(() => reject(hooks.onGiveUp())), Math.max(0, giveUpAt - performance.now()));
    }
    creation.then(
      (session) => settle(() => resolve(session)),
      (err) => settle(() => reject(err)),
    );
  });
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
export function attemptTimeout(attempt: number, linkRttMs: number | undefined, requestTimeout: number): number {
  // Before the first session nothing is known about the link, and a lost handshake is
  // unlikely: give the first attempt all of requestTimeout (a slow link needs it).
  if (linkRttMs === undefined) return attempt === 0 ? requestTimeout : Math.min(requestTimeout, 1_000 * 2 ** (attempt % 4));
  const base = Math.max(1_000, 3 * linkRttMs);
  return Math.min(requestTimeout, base * 2 ** (attempt % 4));
}
