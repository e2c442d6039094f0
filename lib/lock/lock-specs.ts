import { namePrefix, prefixRangeEnd, validateName } from '../etcd/keys.js';
import { LockReleasedError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { withoutStack } from '../queue/hold.js';
import { KEY_SHAPES } from '../queue/name-registry.js';
import type { QueueSpec } from '../queue/queue-spec.js';
import { permitsPolicy, predecessorPolicy } from '../queue/turn-policy.js';
import { validatePermits } from './permits.js';

/** What every lock spec needs from the application (internal). */
export interface LockSpecContext {
  namespace: string;
  identity: string;
  /** A suffix unique within this process, for one key per hold. */
  nextUnique(): string;
}

const released = (name: string) => () => withoutStack(() => new LockReleasedError(name, Messages.lockReleased(name)));

/**
 * The mutex in etcd's own format (Go's `concurrency.Mutex`, `etcdctl lock`):
 * key `<namespace><name>/<lease hex>`, one per session, so contenders of one
 * process queue locally first; the predecessor rule.
 */
export function mutexSpec(context: LockSpecContext, name: string): QueueSpec {
  validateName('lock', name);
  const prefix = namePrefix(context.namespace, name);
  return {
    kind: 'lock',
    registryKind: 'mutex',
    mode: 'exclusive',
    name,
    prefix,
    keyShape: KEY_SHAPES.session,
    contextKey: `mutex:${name}`,
    localQueue: true,
    key: (session) => Buffer.concat([prefix, Buffer.from(session.leaseHex)]),
    value: Buffer.from(context.identity),
    policy: predecessorPolicy({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }),
    releasedReason: released(name),
  };
}

/**
 * Either side of a read/write lock in the key layout of etcd's Go
 * `recipes.RWMutex`: `<name>/read/<unique>` and `<name>/write/<unique>` on
 * the session lease. A reader waits only for older writers, a writer for
 * every older key: FIFO, readers share, writers are never starved.
 */
export function readWriteSpec(context: LockSpecContext, name: string, mode: 'read' | 'write'): QueueSpec {
  validateName('read/write lock', name);
  const prefix = namePrefix(context.namespace, name);
  const mine = Buffer.concat([prefix, Buffer.from(`${mode}/`)]);
  const blocking = mode === 'read' ? Buffer.concat([prefix, Buffer.from('write/')]) : prefix;
  const readKey = `rwread:${name}`;
  const writeKey = `rwwrite:${name}`;
  return {
    kind: mode === 'read' ? 'read lock' : 'write lock',
    registryKind: 'read/write lock',
    mode,
    name,
    prefix,
    keyShape: KEY_SHAPES.readWrite,
    contextKey: mode === 'read' ? readKey : writeKey,
    // Each hold has its own key, so contenders in one process queue in etcd directly.
    localQueue: false,
    key: (session) => Buffer.concat([mine, Buffer.from(`${session.leaseHex}-${context.nextUnique()}`)]),
    value: Buffer.from(context.identity),
    policy: predecessorPolicy({ key: blocking, rangeEnd: prefixRangeEnd(blocking) }, prefix),
    reentrantFrom: mode === 'read' ? [writeKey] : [],
    conflictsWith: mode === 'write' ? [readKey] : [],
    releasedReason: released(name),
  };
}

/**
 * A permit of the counting semaphore `name`: key
 * `<namespace><name>/<lease hex>-<n>`, one per hold; the `permits` oldest
 * keys hold. The registry kind carries `permits`, so two callers of one
 * application that disagree on it are refused.
 */
export function semaphoreSpec(context: LockSpecContext, name: string, permits: number): QueueSpec {
  validateName('semaphore', name);
  validatePermits(permits);
  const prefix = namePrefix(context.namespace, name);
  return {
    kind: 'semaphore',
    registryKind: `semaphore of ${permits} permit${permits === 1 ? '' : 's'}`,
    mode: 'permit',
    name,
    prefix,
    keyShape: KEY_SHAPES.permit,
    contextKey: `semaphore:${name}`,
    localQueue: false,
    key: (session) => Buffer.concat([prefix, Buffer.from(`${session.leaseHex}-${context.nextUnique()}`)]),
    value: Buffer.from(context.identity),
    policy: permitsPolicy({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }, permits),
    releasedReason: released(name),
  };
}
