import type { KeyRange, OlderKey } from '../etcd/etcd-ops.js';

/**
 * How many older keys a waiter reads so that it may know ALL of them: a
 * waiter whose read found at most this many older keys (and no more) follows
 * their deletions itself, with no read (the 'turn' wait). Two covers the next
 * in line and the one behind it (the third candidate of a three-replica
 * election); a larger value would send every deletion to more watchers.
 */
export const TRACKED_OLDER = 2;

/**
 * What a waiter waits on, as decided by its {@link TurnPolicy}. Each target
 * wakes O(1) waiters per hand-off (no herd): a waiter deep in the queue
 * watches its direct predecessor; the first {@link TRACKED_OLDER} waiters
 * watch the deletions of the older keys they all know.
 */
export type WaitTarget =
  /** The deletion of this key (our predecessor left). */
  | { on: 'delete'; key: Buffer }
  /** A PUT or DELETE of this key (our predecessor left, or got its permit and touched its key). */
  | { on: 'change'; key: Buffer }
  /**
   * We know every key older than ours (`older`: the read found them all).
   * Each deletion of one of them (a key of `blocking` created before
   * `maxCreateRevision`, ours) is applied to that set and the policy asked
   * again, WITHOUT a re-check read: when it says we hold, we hold. The
   * deletion of our own key (under the prefix `watch`) loses our place. All
   * of it is seen through ONE watch of `watch`, whose events etcd delivers in
   * revision order: see docs/handoff.md for why this is safe.
   */
  | { on: 'turn'; watch: Buffer; blocking: KeyRange; maxCreateRevision: bigint; older: readonly OlderKey[] };

/** Where our key stands: we hold, or we wait for `wait` and look again. */
export type Standing = { holds: true } | { holds: false; wait: WaitTarget };

/**
 * The one thing that differs between the queue kinds (Curator's
 * `LockInternalsDriver.getsTheLock`): given the newest keys older than ours
 * in `range`, do we hold, and if not, what do we watch? Pure: no I/O.
 */
export interface TurnPolicy {
  /** The key range whose older keys decide our turn. */
  readonly range: KeyRange;
  /** How many of the newest older keys {@link standing} needs. */
  readonly olderLimit: number;
  /**
   * `older`: keys of `range` older than ours, newest first, at most
   * `olderLimit` of them; `more`: further older keys exist.
   */
  standing(older: readonly OlderKey[], more: boolean, myRevision: bigint): Standing;
  /**
   * Whether a waiter that comes to hold must re-put its key to wake the
   * successor watching it for a change (the semaphore's hand-on). Never for
   * read/write keys: Go's RWMutex orders by mod revision, so a re-put would
   * reorder the queue for Go peers.
   */
  readonly touchOnGrant: boolean;
}

/**
 * etcd's mutex and election rule (Go's `waitDeletes`): we hold when no key
 * of `range` is older than ours; otherwise we watch only the newest older
 * key, our predecessor, for its deletion. Serves the mutex and the election
 * (range = the name's prefix), the read lock (range = the `write/` keys: a
 * reader waits only for older writers) and the write lock (range = every
 * key of the name). `queue` is the prefix of the name's keys (ours among
 * them): a waiter that saw every older key watches it to take the turn
 * without a re-check.
 */
export function predecessorPolicy(range: KeyRange, queue: Buffer = range.key): TurnPolicy {
  return {
    range,
    olderLimit: TRACKED_OLDER,
    touchOnGrant: false,
    standing: (older, more, myRevision) => {
      const predecessor = older[0];
      if (!predecessor) return { holds: true };
      // We saw every older key (no older key can ever appear): we follow their deletions and
      // hold when none is left. With more older keys than we read, a predecessor that is
      // itself a waiter may leave while keys older than it still hold: then only a re-check
      // can tell (the 'delete' target).
      if (!more) return { holds: false, wait: { on: 'turn', watch: queue, blocking: range, maxCreateRevision: myRevision, older } };
      return { holds: false, wait: { on: 'delete', key: predecessor.key } };
    },
  };
}

/**
 * The counting semaphore's rule: the `permits` oldest keys hold, so permits
 * are granted in arrival order. The first two waiters (`permits` or
 * `permits + 1` older keys, all seen) watch the range and count the older
 * deletions themselves: the one that leaves fewer than `permits` older keys
 * hands a permit without a re-check. Every later waiter watches only its
 * predecessor for a change: its deletion, or the touch it makes when it gets
 * its permit (then we may be among the first waiters).
 * One hand-off therefore wakes O(1) waiters, whatever the queue length.
 */
export function permitsPolicy(range: KeyRange, permits: number): TurnPolicy {
  return {
    range,
    olderLimit: permits + TRACKED_OLDER - 1,
    touchOnGrant: true,
    standing: (older, more, myRevision) => {
      if (older.length < permits) return { holds: true };
      if (!more) return { holds: false, wait: { on: 'turn', watch: range.key, blocking: range, maxCreateRevision: myRevision, older } };
      return { holds: false, wait: { on: 'change', key: older[0]!.key } };
    },
  };
}
