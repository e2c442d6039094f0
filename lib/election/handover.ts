import type { IKeyValue } from 'etcd3';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { internalName, namePrefix, prefixRangeEnd } from '../etcd/keys.js';
import { HandoverError, NotLeaderError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import type { Leadership } from './leadership.js';

/** Options of {@link ElectionService.handover}. */
export interface HandoverOptions {
  /**
   * The candidate to hand leadership to: its value in the election (its
   * identity, unless it campaigned with another value). Default: the next
   * candidate in the queue.
   */
  to?: string;
  /** For the default election: whether this instance queues again afterwards (default true, as `resign`). */
  rejoin?: boolean;
}

/** What a hand-over did. */
export interface HandoverResult {
  /** The value (identity) of the candidate that is next in line now, and leads once our key is gone. */
  to: string;
  /** Its candidate key. */
  key: string;
  /** Candidates of this library that stood before it and were asked to queue again (their keys). */
  movedBack: string[];
}

/** What the hand-over needs from the election service (internal). */
export interface HandoverContext {
  ops: EtcdOps;
  namespace: string;
  name: string;
  leadership: Leadership | undefined;
  /** Resigns our leadership (stop acting first, then delete our key). */
  resign: () => Promise<void>;
}

const leaseHexOf = (kv: IKeyValue) => BigInt(kv.lease).toString(16);

/**
 * Hands leadership of `name` to the next candidate or to the one named `to`.
 *
 * The next candidate: we resign, and it leads on our key's deletion (one
 * round trip, no re-check: docs/handoff.md). A named candidate further back:
 * the candidates before it must step aside first. Their keys are deleted in
 * one transaction, guarded by our leadership and by each key's create
 * revision; a candidate of this library notices (its own-key watch, or its
 * re-check) and queues again at the back. Only candidates known to be of this
 * library (a live member record on their lease: on unless `membership: false`) are moved: a Go or
 * `etcdctl elect` candidate whose key vanished would wait on and later
 * believe it leads without a key, so a hand-over past one is refused with
 * HandoverError, before anything is changed. Never two leaders: the queue
 * order decides, and we stop acting before our key goes.
 */
export async function handover(context: HandoverContext, options: HandoverOptions): Promise<HandoverResult> {
  const { ops, name, leadership } = context;
  if (!leadership?.isLeader()) throw new NotLeaderError(name, Messages.notLeader(name));
  const prefix = namePrefix(context.namespace, name);
  const what = `hand over election "${name}"`;
  const candidates = await ops.range({ key: prefix, range_end: prefixRangeEnd(prefix), sort_order: 'Ascend', sort_target: 'Create' }, what);
  const [first, ...others] = candidates;
  if (!first || !first.key.equals(leadership.keyBytes)) throw new NotLeaderError(name, Messages.notLeader(name));
  const index = options.to === undefined ? 0 : others.findIndex((kv) => kv.value.toString('utf8') === options.to);
  const target = others[index];
  if (!target) throw new HandoverError(name, options.to === undefined ? Messages.handoverNoCandidate(name) : Messages.handoverNoSuchCandidate(name, options.to));
  const before = others.slice(0, index);
  if (before.length > 0) {
    const members = await ops.range({ key: memberPrefix(context.namespace), range_end: prefixRangeEnd(memberPrefix(context.namespace)), keys_only: true }, what);
    const ours = new Set(members.map((kv) => kv.key.subarray(memberPrefix(context.namespace).length).toString('utf8')));
    const foreign = before.find((kv) => !ours.has(leaseHexOf(kv)));
    if (foreign) throw new HandoverError(name, Messages.handoverForeignCandidate(name, options.to!, foreign.key.toString('utf8')));
    const moved = await ops.txn(
      {
        compare: [leadership.ownershipCompare(), ...before.map((kv) => ({ key: kv.key, target: 'Create' as const, result: 'Equal' as const, create_revision: kv.create_revision }))],
        success: before.map((kv) => ({ request_delete_range: { key: kv.key } })),
        failure: [],
      },
      what,
    );
    if (!moved.succeeded) throw new HandoverError(name, Messages.handoverRaced(name));
  }
  await context.resign();
  return { to: target.value.toString('utf8'), key: target.key.toString('utf8'), movedBack: before.map((kv) => kv.key.toString('utf8')) };
}

/** Where membership records live: one key per live session, `<namespace>_coordination:members/<lease hex>`. */
export function memberPrefix(namespace: string): Buffer {
  return namePrefix(namespace, internalName('members'));
}
