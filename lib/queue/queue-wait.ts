import type { EtcdOps, KeyRange, OlderKey, QueueView } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEvent, WatchTarget } from '../etcd/watch.js';
import { NameInUseError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { backoffDelay, operationSignal, sleep } from '../util/abort.js';
import type { QueueSpec } from './queue-spec.js';
import type { WaitTarget } from './turn-policy.js';

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
  signal: AbortSignal,
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
    if (signal.aborted) throw signal.reason;
    view ??= await ops.checkOlder(queued.myKey, myRevision, policy.range, policy.olderLimit, what);
    if (!view) throw new OwnKeyGoneError(queued.myKey);
    queued.knownAt = view.headerRevision;
    assertSameKind(spec, view.older);
    let standing = policy.standing(view.older, view.more, myRevision);
    while (!standing.holds) {
      if (tryOnly) return false;
      waited = true;
      const wait: WaitTarget = standing.wait;
      const outcome = await waitAtMost(recheckMs, signal, (bounded) =>
        watches.next(watchTarget(wait, view!.headerRevision), bounded, acceptor(wait, queued.myKey)),
      );
      if (outcome === 'failed') {
        // Compaction or a cancelled watch: back off a little, then re-read the truth.
        await sleep(backoffDelay(watchFailures++, 50, 2_000), signal);
        break;
      }
      watchFailures = 0;
      if (outcome === 'recheck' || wait.on !== 'turn') break;
      // The one watch of a 'turn' wait delivers our own key's deletion before any later event.
      if (outcome.kv.key.equals(queued.myKey)) throw new OwnKeyGoneError(queued.myKey);
      if (!handsUsTheTurn(wait, outcome)) break; // etcd could not say how old the deleted key was: re-check
      // An older holder left, our key was still there at that revision: we hold (docs/handoff.md).
      queued.knownAt = BigInt(outcome.kv.mod_revision);
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

function watchTarget(wait: WaitTarget, headerRevision: bigint): WatchTarget {
  const fromRevision = headerRevision + 1n;
  switch (wait.on) {
    case 'delete':
      return { key: wait.key, fromRevision, deletesOnly: true };
    case 'change':
      return { key: wait.key, fromRevision };
    case 'turn':
      return { key: wait.watch, prefix: true, fromRevision, deletesOnly: true, previous: true };
  }
}

const inRange = (key: Buffer, range: KeyRange): boolean =>
  key.compare(range.key) >= 0 && (range.rangeEnd === undefined ? key.equals(range.key) : key.compare(range.rangeEnd) < 0);

/** A deletion seen by a 'turn' wait that leaves no older key: the deleted key blocked us and was older than ours. */
function handsUsTheTurn(wait: Extract<WaitTarget, { on: 'turn' }>, { kv, previous }: WatchEvent): boolean {
  return previous !== undefined && inRange(kv.key, wait.blocking) && BigInt(previous.create_revision) < wait.maxCreateRevision;
}

/**
 * For `turn`: our own key's deletion, and deletions of older blocking keys;
 * deletions of newer keys (waiters behind us giving up) and of keys that do
 * not block us (other readers) are filtered out with the previous key-value.
 * When etcd cannot supply it we wake anyway: the caller then re-checks.
 */
function acceptor(wait: WaitTarget, myKey: Buffer): (event: WatchEvent) => boolean {
  if (wait.on !== 'turn') return () => true;
  return ({ kv, previous }) => {
    if (kv.key.equals(myKey)) return true;
    if (!inRange(kv.key, wait.blocking)) return false;
    return !previous || BigInt(previous.create_revision) < wait.maxCreateRevision;
  };
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
