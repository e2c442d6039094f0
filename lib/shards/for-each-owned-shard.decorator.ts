import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages, ShardMessages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';
import { describeTarget, isAsyncFunction, replaceMethod } from '../decorators/method-wrapper.js';
import { markDecorated, resolveRuntime } from '../decorators/coordination.runtime.js';
import { shardServiceOf } from './shard.service.js';
import type { ShardGroup } from './shard-group.js';

/** The open group of the call's application; throws (fail closed) when there is none. */
export function resolveGroup(self: unknown, decorator: string, where: string, group: string): ShardGroup {
  const runtime = resolveRuntime(self, decorator, where);
  const found = shardServiceOf(runtime.locks)?.find(group);
  if (!found) throw new InvalidUsageError(ShardMessages.unknownGroup(group, `${decorator} on ${where}`));
  return found;
}

/**
 * Calls the method once per shard of `group` this instance owns, each call
 * with its {@link ShardContext} as the first argument (then the caller's
 * arguments), concurrently, in the shard's context ({@link currentShard}).
 * A shard is not handed on while its call runs. Owning no shard: nothing
 * runs. Composes with `@Interval`/`@Cron` in either order. Fails closed: no
 * module, or a group not opened with `ShardService.group(...)`, throws
 * (async methods reject). The method's own errors are logged per shard and
 * do not stop the other shards; the wrapper resolves when every call settled.
 */
export function ForEachOwnedShard(group: string) {
  validateName('shard group', group);
  return <T extends (...args: any[]) => unknown>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): TypedPropertyDescriptor<T> => {
    const where = describeTarget(target, propertyKey);
    if (typeof descriptor?.value !== 'function') throw new InvalidUsageError(Messages.notAMethod('ForEachOwnedShard', where));
    markDecorated(target);
    return replaceMethod(descriptor, (original) =>
      async function forEachOwnedShardWrapper(this: unknown, ...args: unknown[]) {
        const found = resolveGroup(this, 'ForEachOwnedShard', where, group);
        const runtime = resolveRuntime(this, 'ForEachOwnedShard', where);
        if (found.ownedShards().size === 0) {
          runtime.logger.debug(ShardMessages.log.forEachSkipped(where, group));
          return undefined;
        }
        await Promise.all(
          [...found.ownedShards()].map(async (shard) => {
            try {
              await found.runInShard(shard, (context) => original.apply(this, [context, ...args]));
            } catch (err) {
              runtime.logger.error(ShardMessages.log.shardRunFailed(where, group, shard, err instanceof Error ? err.message : String(err)));
            }
          }),
        );
        return undefined;
      },
    ) as TypedPropertyDescriptor<T>;
  };
}

/**
 * Runs the method only if this instance owns the shard of the key that
 * `keyOf(...args)` returns (hashed as documented in the README), in the
 * shard's context; otherwise it returns `undefined` (a resolved Promise for
 * async methods) without running. Fails closed: no module, an unopened
 * group, or a key that is not a string throws.
 */
export function ShardOwned<A extends unknown[]>(group: string, keyOf: (...args: A) => string) {
  validateName('shard group', group);
  return <T extends (...args: A) => unknown>(target: object, propertyKey: string | symbol, descriptor: TypedPropertyDescriptor<T>): TypedPropertyDescriptor<T> => {
    const where = describeTarget(target, propertyKey);
    if (typeof keyOf !== 'function') throw new InvalidUsageError(ShardMessages.keyOfNotFunction(where));
    if (typeof descriptor?.value !== 'function') throw new InvalidUsageError(Messages.notAMethod('ShardOwned', where));
    const isAsync = isAsyncFunction(descriptor.value);
    markDecorated(target);
    return replaceMethod(descriptor, (original) =>
      function shardOwnedWrapper(this: unknown, ...args: unknown[]) {
        let found: ShardGroup;
        let shard: number;
        try {
          found = resolveGroup(this, 'ShardOwned', where, group);
          shard = found.shardOf(keyOf(...(args as A)));
          if (!found.ownsShard(shard)) {
            resolveRuntime(this, 'ShardOwned', where).logger.debug(ShardMessages.log.shardOwnedSkipped(where, group, shard));
            return isAsync ? Promise.resolve(undefined) : undefined;
          }
        } catch (err) {
          if (isAsync) return Promise.reject(err);
          throw err;
        }
        // runInShard re-checks ownership and holds off the hand-on until the call settles.
        return found.enter(shard, () => original.apply(this, args));
      },
    ) as TypedPropertyDescriptor<T>;
  };
}
