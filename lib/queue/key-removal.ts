import { Logger } from '@nestjs/common';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdSession } from '../session/etcd-session.js';
import { isTransientEtcdError } from '../etcd/etcd-errors.js';
import { EtcdAuthenticationError, EtcdPermissionError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, sleep } from '../util/abort.js';

/**
 * Removes our keys on every way out of a hold or a wait. A removal that etcd
 * does not answer is retried in the background until it succeeds or the
 * session ends, and the next claim of the same key waits for it (otherwise
 * that claim would adopt the old key and its old revision).
 */
export class KeyRemover {
  private readonly fallbackLogger = new Logger('Coordination');
  private get logger() { return this.ops.instrumentation?.logger ?? this.fallbackLogger; } // the testing kit's ops have none
  private readonly pending = new Map<string, Promise<void>>();

  constructor(
    private readonly ops: EtcdOps,
    private readonly shutdownSignal: AbortSignal,
  ) {}

  /** A removal of `key` still being retried, to wait for before claiming it again; `undefined` when none. */
  pendingFor(key: Buffer): Promise<void> | undefined {
    return this.pending.size === 0 ? undefined : this.pending.get(key.toString('utf8'));
  }

  /**
   * Deletes our key, guarded by its create revision (or, when the revision
   * is unknown because a claim's answer was lost, unconditionally: the key
   * name is ours alone). Waits one request for it.
   */
  async remove(session: EtcdSession, key: Buffer, revision: bigint | undefined, what: string): Promise<void> {
    if (session.endReason) return; // the lease is gone or being revoked, and our key with it
    const keyString = key.toString('utf8');
    const attempt = () =>
      revision === undefined
        ? this.ops.txn({ success: [{ request_delete_range: { key } }] }, `release ${what}`).then(() => undefined)
        : this.ops.deleteIfRevision(key, revision, `release ${what}`).then(() => undefined);
    try {
      await attempt();
      return;
    } catch (err) {
      if (isPermanent(err)) {
        this.logger.warn(Messages.log.keyRemovalFailed(keyString, (err as Error).message, false));
        return;
      }
      this.logger.warn(Messages.log.keyRemovalFailed(keyString, (err as Error).message, true));
    }
    const retry = this.retry(session, attempt).finally(() => {
      if (this.pending.get(keyString) === retry) this.pending.delete(keyString);
    });
    this.pending.set(keyString, retry);
  }

  private async retry(session: EtcdSession, attempt: () => Promise<void>): Promise<void> {
    // Stop at shutdown too: shutdown waits for this loop before it closes the session, and
    // closing the session revokes the lease, which deletes the key anyway.
    const stop = operationSignal({ others: [session.signal, this.shutdownSignal] });
    try {
      for (let n = 0; !stop.signal.aborted; n++) {
        await sleep(backoffDelay(n, 200, 2_000), stop.signal).catch(() => undefined);
        if (stop.signal.aborted) return;
        try {
          await attempt();
          return;
        } catch (err) {
          if (isPermanent(err) || !isTransientEtcdError(err)) return;
        }
      }
    } finally {
      stop.dispose();
    }
  }

  /** Waits for every removal still being retried (shutdown). */
  async drain(): Promise<void> {
    await Promise.allSettled([...this.pending.values()]);
  }
}

/**
 * Errors after which deleting our key can never succeed, and the key cannot
 * exist: our role may not write it (or we have no valid credentials), so the
 * claim cannot have created it either. Retrying could never succeed, and the
 * next claim of the key would wait for it forever.
 */
function isPermanent(err: unknown): boolean {
  return err instanceof EtcdPermissionError || err instanceof EtcdAuthenticationError;
}
