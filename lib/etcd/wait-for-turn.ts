import type { Blocker, EtcdOps, KeyRange } from './etcd-ops.js';
import { backoffDelay, sleep } from '../util/abort.js';

/** Our key vanished while we waited: the session lease expired or was revoked. */
export class OwnKeyGoneError extends Error {
  constructor(key: Buffer) {
    super(`our key ${key.toString('utf8')} is gone (session expired)`);
  }
}

/**
 * etcd's queue discipline (Go's `waitDeletes`, without the herd): wait for the
 * newest older key of `blocking` to be deleted, then re-check atomically that
 * our own key still exists and that no older key remains; repeat. Watching
 * only the direct predecessor means one watch event per hand-off, however
 * many waiters there are.
 */
export async function waitForTurn(
  ops: EtcdOps,
  params: {
    myKey: Buffer;
    myRevision: bigint;
    blocking: KeyRange;
    signal: AbortSignal;
    what: string;
    /** What the claim already told us; 'unknown' forces a check first. */
    blocker: Blocker | undefined | 'unknown';
    headerRevision: bigint;
    /** Also wake up when the blocker is re-put (semaphore hand-over); default: deletes only. */
    wakeOnPut?: boolean;
  },
): Promise<void> {
  let { blocker, headerRevision } = params;
  let watchFailures = 0;
  for (;;) {
    if (params.signal.aborted) throw params.signal.reason;
    if (blocker === 'unknown') {
      const check = await ops.checkBlocker(params.myKey, params.myRevision, params.blocking, params.what);
      if (check.ownKeyGone) throw new OwnKeyGoneError(params.myKey);
      blocker = check.blocker;
      headerRevision = check.headerRevision;
    }
    if (blocker === undefined) return;
    const outcome = await ops.waitForDeletion(
      blocker.key,
      headerRevision,
      params.signal,
      params.wakeOnPut ? 'put-or-delete' : 'delete',
    );
    if (outcome === 'watch-error') {
      // Compaction or a cancelled watch: back off a little, then re-read the truth.
      await sleep(backoffDelay(watchFailures++, 50, 2_000), params.signal);
    } else {
      watchFailures = 0;
    }
    blocker = 'unknown';
  }
}
