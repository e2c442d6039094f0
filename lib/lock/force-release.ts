import type { IKeyValue } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { OperateMessages } from '../coordination.messages.js';
import { KEY_SHAPES } from '../queue/name-registry.js';
import { FORCE_RELEASE_MARKER } from '../queue/held-key-watch.js';
import { sleep } from '../util/abort.js';

/** Options of {@link LockService.forceRelease}. */
export interface ForceReleaseOptions {
  /**
   * Delete this exact key of the name (the full etcd key, namespace
   * included, as `inspect` and `heldLocks()` show it) instead of the mutex
   * holder: the way to end one holder of a read/write lock or one permit of a
   * semaphore, which can have several holders at once.
   */
  key?: string;
  /**
   * Delete only if the key still has this create revision (the revision an
   * operator saw in `inspect`): a newer holder is never deleted. Without it,
   * the holder read just before the delete is the one deleted (still guarded
   * by its create revision in the same transaction).
   */
  revision?: bigint;
  /**
   * How long (ms, default 3000) a holder of this library gets to stop and
   * delete its own key after being told (see below) before the key is
   * deleted anyway; 0 deletes at once. Not used for read/write keys.
   */
  graceMs?: number;
  /** Who asks (shown to the holder); default: the caller's identity. */
  by?: string;
}

/** What {@link LockService.forceRelease} deleted. */
export interface ForcedRelease {
  /** The lock's name. */
  name: string;
  /** The deleted etcd key. */
  key: string;
  /** The value it held: the holder's identity (empty for `etcdctl lock`), or an election's proclamation. */
  identity: string;
  /** The holder's session lease id (its other keys, and the lease, are left alone). */
  leaseId: bigint;
  /** The key's create revision (the holder's fencing token without the `fencingEpoch`). */
  revision: bigint;
  /** True when the holder stopped and deleted its key itself, within the grace period. */
  cooperative: boolean;
}

const DEFAULT_GRACE_MS = 3_000;
const POLL_MS = 25;

/** Describes the shape of a key below the name's prefix, for the refusal message. */
function shapeOf(suffix: string): string {
  if (KEY_SHAPES.readWrite.test(suffix)) return 'read/write lock';
  if (KEY_SHAPES.permit.test(suffix)) return 'semaphore';
  return 'foreign';
}

function validate(options: unknown): ForceReleaseOptions {
  if (typeof options !== 'object' || options === null) throw new InvalidUsageError(OperateMessages.invalidOptions());
  const { key, revision, graceMs, by } = options as ForceReleaseOptions;
  if (key !== undefined && typeof key !== 'string') throw new InvalidUsageError(OperateMessages.invalidOptions());
  if (revision !== undefined && (typeof revision !== 'bigint' || revision <= 0n)) throw new InvalidUsageError(OperateMessages.invalidRevision(revision));
  if (graceMs !== undefined && (typeof graceMs !== 'number' || !Number.isInteger(graceMs) || graceMs < 0 || graceMs > 600_000)) {
    throw new InvalidUsageError(OperateMessages.invalidGrace(graceMs));
  }
  if (by !== undefined && typeof by !== 'string') throw new InvalidUsageError(OperateMessages.invalidOptions());
  return { key, revision, graceMs, by };
}

/**
 * The key {@link forceReleaseKey} would delete: `options.key` if it exists,
 * else the oldest key under `prefix` (the mutex holder, or an election's
 * leader: the two share Go's `<name>/<lease hex>` format). InvalidUsageError
 * when the oldest key is a read/write lock's or a semaphore's (several
 * holders: the caller must name one) or `options.key` is not under `prefix`.
 */
export async function findForceReleaseTarget(
  ops: Pick<EtcdOps, 'txn' | 'oldest'>,
  name: string,
  prefix: Buffer,
  options: ForceReleaseOptions = {},
): Promise<IKeyValue | undefined> {
  const what = `force-release "${name}"`;
  if (options.key !== undefined) {
    const key = Buffer.from(options.key, 'utf8');
    if (key.length <= prefix.length || !key.subarray(0, prefix.length).equals(prefix)) {
      throw new InvalidUsageError(OperateMessages.keyOutsideName(name, options.key, prefix.toString('utf8')));
    }
    // A one-range transaction: the request shape the testing kit's in-memory store answers too.
    const res = await ops.txn({ compare: [], success: [{ request_range: { key } }], failure: [] }, what);
    return res.responses[0]?.response_range.kvs[0];
  }
  const kv = await ops.oldest({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }, what);
  if (kv) {
    const suffix = kv.key.subarray(prefix.length).toString('utf8');
    if (!KEY_SHAPES.session.test(suffix)) {
      throw new InvalidUsageError(OperateMessages.notAMutexHolder(name, kv.key.toString('utf8'), shapeOf(suffix)));
    }
  }
  return kv;
}

/**
 * Deletes the current holder's key of the name whose keys start with
 * `prefix` (see {@link findForceReleaseTarget}), in a transaction that
 * compares the key's create revision, so a holder that took the lock after
 * our read is never deleted. `null` when nothing was deleted: no holder, no
 * such key, the key is not at `revision`, or it changed hands between the
 * read and the delete. Shared by `LockService.forceRelease` and the CLI.
 */
export async function forceReleaseKey(
  ops: Pick<EtcdOps, 'txn' | 'oldest' | 'deleteIfRevision' | 'putIfRevision' | 'checkOlder'>,
  name: string,
  prefix: Buffer,
  rawOptions: unknown = {},
): Promise<ForcedRelease | null> {
  const options = validate(rawOptions);
  const kv = await findForceReleaseTarget(ops, name, prefix, options);
  if (!kv) return null;
  const revision = BigInt(kv.create_revision);
  if (options.revision !== undefined && options.revision !== revision) return null;
  const what = `force-release "${name}"`;
  const released = (cooperative: boolean): ForcedRelease =>
    ({ name, key: kv.key.toString('utf8'), identity: kv.value.toString('utf8'), leaseId: BigInt(kv.lease), revision, cooperative });
  // Tell the holder first: a holder of this library watches its key, sees the marker, aborts its
  // signal and deletes the key itself, so the next waiter cannot act before the holder was told
  // (a plain delete races the holder's watch against the waiter's). Not for read/write keys: Go's
  // RWMutex orders by mod revision, and a put would move the holder to the back for Go peers.
  const graceMs = options.graceMs ?? DEFAULT_GRACE_MS;
  const suffix = kv.key.subarray(prefix.length).toString('utf8');
  if (graceMs > 0 && !KEY_SHAPES.readWrite.test(suffix)) {
    const marker = Buffer.from(FORCE_RELEASE_MARKER + (options.by ?? ''));
    if (!(await ops.putIfRevision(kv.key, revision, marker, BigInt(kv.lease), what))) return null;
    for (const deadline = Date.now() + graceMs; Date.now() < deadline; ) {
      await sleep(POLL_MS);
      if (!(await ops.checkOlder(kv.key, revision, { key: kv.key }, 1, what))) return released(true);
    }
  }
  // No answer (dead, stopped, a Go or etcdctl holder): delete it, guarded by its create revision.
  if (!(await ops.deleteIfRevision(kv.key, revision, what))) return graceMs > 0 ? released(true) : null;
  return released(false);
}
