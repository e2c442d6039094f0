import type { EtcdOps, OlderKey, QueueView } from '../etcd/etcd-ops.js';
import type { EtcdWatches } from '../etcd/watch.js';
import { NameInUseError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, sleep, type LazyOperationSignal } from '../util/abort.js';
import type { QueueSpec } from './queue-spec.js';
import type { WaitTarget } from './turn-policy.js';
import { waitRound, type RoundContext } from './wait-round.js';

/** Our key vanished while we waited: the session lease expired or was revoked, or someone deleted it. */
export class OwnKeyGoneError extends Error {
  constructor(key: Buffer) {
    super(Messages.ownKeyGone(key.toString('utf8')));
  }
}

/** Our key in the queue, as the wait loop tracks it (internal). */
export interface QueuedKey {
  myKey: Buffer;
  myRevision?: bigint;
  leaseId: bigint;
  /**
   * A revision at which etcd showed our key in place (the claim, the last
   * check, or the event that handed us the turn): the hold watches its key from the next one.
   */
  knownAt?: bigint;
}

/**
 * The queue algorithm, once for every kind: claim our key (one transaction
 * that also reads the newest older keys), ask the turn policy where we
 * stand, wait on what it says to watch, re-check atomically (our own key
 * still there + the older keys), repeat. Resolves true when we hold, false
 * when `tryOnly` and we would have to wait. `queued.myRevision` is set as
 * soon as the claim answered, so the caller can remove our key on every way
 * out (this function never removes it).
 */
export async function claimAndWait(
  ops: EtcdOps,
  watches: EtcdWatches,
  spec: QueueSpec,
  queued: QueuedKey,
  op: LazyOperationSignal,
  tryOnly: boolean,
  recheckMs: number,
): Promise<boolean> {
  const what = `acquire ${spec.kind} "${spec.name}"`;
  const { policy } = spec;
  const claim = await ops.claimKey(queued.myKey, spec.value, queued.leaseId, policy.range, policy.olderLimit, what);
  const myRevision = claim.myRevision;
  queued.myRevision = myRevision;
  let view: QueueView | undefined;
  // A key that already existed (a retried claim, or a campaign that kept its key) may
  // carry another value, and may have waited behind us: look where it stands.
  let waited = !claim.created;
  queued.knownAt = claim.headerRevision;
  if (claim.created) view = claim;
  else if (!claim.existingValue.equals(spec.value)) {
    if (!(await ops.putIfRevision(queued.myKey, myRevision, spec.value, queued.leaseId, what))) throw new OwnKeyGoneError(queued.myKey);
  }
  const round: RoundContext = { ops, watches, policy, myKey: queued.myKey, myRevision, what, accept: (fresh) => assertSameKind(spec, fresh.older) };
  for (let watchFailures = 0; ; ) {
    if (op.aborted) throw op.reason;
    view ??= await ops.checkOlder(queued.myKey, myRevision, policy.range, policy.olderLimit, what);
    if (!view) throw new OwnKeyGoneError(queued.myKey);
    queued.knownAt = view.headerRevision;
    assertSameKind(spec, view.older);
    let standing = policy.standing(view.older, view.more, myRevision);
    while (!standing.holds) {
      if (tryOnly) return false;
      waited = true;
      const wait: WaitTarget = standing.wait;
      // Only a wait makes the composite signal (see LazyOperationSignal).
      const signal = op.signal;
      const outcome = await waitAtMost(recheckMs, signal, (bounded) => waitRound(round, wait, view!, bounded));
      if (outcome === 'failed') {
        // Compaction, a cancelled watch or a lost stream: back off a little, then re-read the truth.
        await sleep(backoffDelay(watchFailures++, 50, 2_000), signal);
        break;
      }
      watchFailures = 0;
      if (outcome === 'recheck') break;
      // The one watch of a 'turn' wait delivers our own key's deletion before any later event.
      if (outcome === 'gone') throw new OwnKeyGoneError(queued.myKey);
      if ('view' in outcome) {
        // The watch's catch-up read: stand on it, no further read.
        view = outcome.view;
        queued.knownAt = view.headerRevision;
        standing = policy.standing(view.older, view.more, myRevision);
        continue;
      }
      // The older keys we knew are gone, our key was still there at that revision: we hold (docs/handoff.md).
      queued.knownAt = outcome.heldAt;
      standing = { holds: true };
    }
    if (standing.holds) {
      // Wake our successor, which watches only us for a change.
      if (waited && policy.touchOnGrant && !(await ops.putIfRevision(queued.myKey, myRevision, spec.value, queued.leaseId, what))) {
        throw new OwnKeyGoneError(queued.myKey);
      }
      return true;
    }
    view = undefined;
  }
}

/**
 * Runs a wait for a watch event, bounded by `ms`: then it ends as `'recheck'`
 * and the caller re-reads the queue. A watch event that never arrives (a
 * middlebox that dropped bytes of a connection that stays up, found by the
 * soak) would otherwise leave a waiter, and everyone queued behind it, stuck
 * for as long as its session lives.
 */
async function waitAtMost<T>(ms: number, signal: AbortSignal, wait: (bounded: AbortSignal) => Promise<T>): Promise<T | 'recheck'> {
  const bounded = operationSignal({ timeoutMs: ms, others: [signal] });
  try {
    return await wait(bounded.signal);
  } catch (err) {
    if (bounded.cause() === 'timeout') return 'recheck';
    throw err;
  } finally {
    bounded.dispose();
  }
}

/** Refuses a queue that holds keys of another kind's shape (the same name used as another kind elsewhere). */
function assertSameKind(spec: QueueSpec, older: readonly OlderKey[]): void {
  for (const { key } of older) {
    if (!key.subarray(0, spec.prefix.length).equals(spec.prefix)) continue;
    const suffix = key.subarray(spec.prefix.length).toString('utf8');
    if (!spec.keyShape.test(suffix)) {
      const found = Messages.foreignKey(key.toString('utf8'));
      throw new NameInUseError(spec.name, spec.registryKind, found, Messages.nameInUse(spec.name, spec.kind, found));
    }
  }
}
