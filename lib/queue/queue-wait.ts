import type { EtcdOps, KeyRange, OlderKey, QueueView } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchTarget } from '../etcd/watch.js';
import { NameInUseError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, sleep, type LazyOperationSignal } from '../util/abort.js';
import type { QueueSpec } from './queue-spec.js';
import type { TurnPolicy, WaitTarget } from './turn-policy.js';

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
      const outcome = await waitAtMost(recheckMs, signal, (bounded) =>
        wait.on === 'turn'
          ? waitForTurn(watches, wait, view!.headerRevision, queued.myKey, policy, bounded)
          : watches.next(watchTarget(wait, view!.headerRevision), bounded).then((event) => (event === 'failed' ? 'failed' : 'recheck')),
      );
      if (outcome === 'failed') {
        // Compaction or a cancelled watch: back off a little, then re-read the truth.
        await sleep(backoffDelay(watchFailures++, 50, 2_000), signal);
        break;
      }
      watchFailures = 0;
      if (outcome === 'recheck') break;
      // The one watch of a 'turn' wait delivers our own key's deletion before any later event.
      if (outcome === 'gone') throw new OwnKeyGoneError(queued.myKey);
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

/** The one-key watch of a waiter that re-checks when its predecessor changes. */
function watchTarget(wait: Exclude<WaitTarget, { on: 'turn' }>, headerRevision: bigint): WatchTarget {
  const fromRevision = headerRevision + 1n;
  return wait.on === 'delete' ? { key: wait.key, fromRevision, deletesOnly: true } : { key: wait.key, fromRevision };
}

const inRange = (key: Buffer, range: KeyRange): boolean =>
  key.compare(range.key) >= 0 && (range.rangeEnd === undefined ? key.equals(range.key) : key.compare(range.rangeEnd) < 0);

/** How a 'turn' wait ended: we hold (at that revision), our key is gone, or only a re-read can tell. */
type TurnOutcome = { heldAt: bigint } | 'gone' | 'recheck' | 'failed';

/**
 * The 'turn' wait: ONE watch of the name's prefix (deletions, with previous
 * key-values) from the revision after our read, which saw every key older
 * than ours (`wait.older`). Each deletion of one of them is applied to that
 * set and the policy asked again: when it says we hold, we hold, with no
 * read. Our own key's deletion loses our place. Deletions of newer keys
 * (waiters behind us giving up) and of keys that do not block us (other
 * readers) are ignored. A deletion etcd cannot describe (no previous
 * key-value), or of an older key our read did not show, ends in a re-check.
 */
async function waitForTurn(
  watches: EtcdWatches,
  wait: Extract<WaitTarget, { on: 'turn' }>,
  readAt: bigint,
  myKey: Buffer,
  policy: TurnPolicy,
  signal: AbortSignal,
): Promise<TurnOutcome> {
  let remaining = wait.older;
  let outcome: TurnOutcome = 'recheck';
  const target: WatchTarget = { key: wait.watch, prefix: true, fromRevision: readAt + 1n, deletesOnly: true, previous: true };
  const end = await watches.follow(target, signal, ({ kv, previous }) => {
    if (kv.key.equals(myKey)) return stop('gone');
    if (!inRange(kv.key, wait.blocking)) return false;
    if (!previous) return stop('recheck');
    const created = BigInt(previous.create_revision);
    if (created >= wait.maxCreateRevision) return false;
    const left = remaining.filter((older) => !(older.createRevision === created && older.key.equals(kv.key)));
    // An older key our read did not show: it was deleted before our read, so this cannot be.
    if (left.length === remaining.length) return stop('recheck');
    remaining = left;
    const standing = policy.standing(remaining, false, wait.maxCreateRevision);
    if (standing.holds) return stop({ heldAt: BigInt(kv.mod_revision) });
    return standing.wait.on === 'turn' ? false : stop('recheck');
  });
  function stop(result: TurnOutcome): true {
    outcome = result;
    watches.stats.wakeups++;
    return true;
  }
  if (end === 'aborted') throw signal.reason;
  return end === 'failed' ? 'failed' : outcome;
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
