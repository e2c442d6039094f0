import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEvent } from '../etcd/watch.js';
import { HoldLostError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, sleep } from '../util/abort.js';
import type { Hold } from './hold.js';

/**
 * The value `LockService.forceRelease` (and the CLI's `release`) writes on a
 * holder's key, followed by who asked, before deleting it: a holder of this
 * library sees it on its key watch, aborts its signal and deletes its key
 * itself, so the next waiter cannot act before the holder was told.
 */
export const FORCE_RELEASE_MARKER = 'nest-etcd-coordination:force-release:';

/** Why a held key is no longer ours, from one event on it (undefined: still ours). */
export function takenBy(event: WatchEvent, hold: Pick<Hold, 'revision' | 'session' | 'mode' | 'name' | 'key'>, kind: string): HoldLostError | undefined {
  const { name, key } = hold;
  if (event.type === 'delete') return new HoldLostError(name, Messages.heldKeyDeleted(kind, name, key));
  const { kv } = event;
  if (BigInt(kv.create_revision) !== hold.revision || BigInt(kv.lease) !== hold.session.leaseId) {
    return new HoldLostError(name, Messages.heldKeyReplaced(kind, name, key));
  }
  const value = kv.value.toString('utf8');
  if (value.startsWith(FORCE_RELEASE_MARKER)) {
    return new HoldLostError(name, Messages.heldKeyForceReleased(kind, name, value.slice(FORCE_RELEASE_MARKER.length)));
  }
  return undefined;
}

/**
 * Watches a held key (through the one watch helper) for as long as the hold
 * lasts, and calls `lost` the moment anyone else deletes it, moves it off
 * our lease, re-creates it, or asks for a force release: the hold's signal
 * must abort then, not at release or session end. Our own writes of the key
 * (a proclamation) keep its create revision and lease and are ignored. When
 * the watch fails (compaction, a cancelled stream) the key is re-read and
 * watched again from that read; `hold.signal` ends the watch.
 */
export function watchHeldKey(
  watches: EtcdWatches,
  ops: EtcdOps,
  hold: Hold,
  kind: string,
  fromRevision: bigint,
  lost: (reason: HoldLostError) => void,
): void {
  const { signal } = hold;
  const what = `watch held ${kind} "${hold.name}"`;
  void (async () => {
    let from = fromRevision;
    for (let failures = 0; !signal.aborted; failures++) {
      let reason: HoldLostError | undefined;
      const end = await watches.follow({ key: hold.keyBytes, fromRevision: from }, signal, (event) => {
        reason = takenBy(event, hold, kind);
        return reason !== undefined;
      });
      if (reason) return lost(reason);
      if (end !== 'failed') return;
      await sleep(backoffDelay(failures, 50, 2_000), signal);
      // Our key, with our create revision, at the revision of this read (none of it is older than it).
      const view = await ops.checkOlder(hold.keyBytes, hold.revision, { key: hold.keyBytes }, 1, what);
      if (signal.aborted) return;
      if (!view) return lost(new HoldLostError(hold.name, Messages.heldKeyDeleted(kind, hold.name, hold.key)));
      from = view.headerRevision + 1n;
    }
  })().catch(() => {
    // A failed re-read (etcd unreachable): the session deadline still bounds the hold, as before.
  });
}
