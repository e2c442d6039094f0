import { internalName, namePrefix, prefixRangeEnd } from '../etcd/keys.js';
import { withoutStack } from '../queue/hold.js';
import { KEY_SHAPES } from '../queue/name-registry.js';
import type { QueueSpec } from '../queue/queue-spec.js';
import { predecessorPolicy } from '../queue/turn-policy.js';
import { LockReleasedError } from '../errors/coordination.errors.js';
import { ShardMessages } from '../coordination.messages.js';

/** The queue name of one shard: `_coordination:shards:<group>:<shard>` (internal). */
export function shardQueueName(group: string, shard: number): string {
  return internalName('shards', group, String(shard));
}

/**
 * One shard as a mutex of the one queue engine: key
 * `<namespace>_coordination:shards:<group>:<shard>/<lease hex>` on the
 * session lease, value = identity, the predecessor rule. Owning the shard is
 * holding this mutex, so ownership inherits the engine's guarantees (FIFO
 * hand-off only after the previous key is gone, fencing token, signal aborted
 * at the session deadline). Not `mutexSpec`: user names may not use the
 * reserved prefix, so that validation would refuse it.
 */
export function shardSpec(namespace: string, identity: string, group: string, shard: number): QueueSpec {
  const name = shardQueueName(group, shard);
  const prefix = namePrefix(namespace, name);
  return {
    kind: 'shard',
    registryKind: 'shard',
    mode: 'exclusive',
    name,
    prefix,
    keyShape: KEY_SHAPES.session,
    contextKey: `shard:${group}:${shard}`,
    localQueue: true,
    key: (session) => Buffer.concat([prefix, Buffer.from(session.leaseHex)]),
    value: Buffer.from(identity),
    policy: predecessorPolicy({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }),
    releasedReason: () => withoutStack(() => new LockReleasedError(name, ShardMessages.shardReleased(group, shard))),
  };
}
