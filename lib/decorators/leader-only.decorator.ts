import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';
import { runWithLeadership } from '../context/coordination.context.js';
import { describeTarget, methodKind, replaceMethod } from './method-wrapper.js';
import { describeWrapper, kindOfWrapper, markDecorated, refusalOfWrapper, resolveRuntime } from './coordination.runtime.js';
import { drainAware } from '../shutdown/drain-aware.js';

/**
 * Runs the method only while this instance leads `election` (the default
 * election when omitted); otherwise returns `undefined` (a resolved Promise
 * for async methods) without running it and logs at debug level. The check
 * is local: no etcd round trip per call, and it turns false at the session
 * deadline, before etcd could elect anyone else.
 *
 * Inside the method, {@link currentLeadership} gives the fencing token and an
 * AbortSignal that aborts if leadership is lost during the run.
 *
 * For an election other than the default one, this instance must campaign
 * for it (`ElectionService.campaign(name)`); otherwise the method never runs.
 */
export function LeaderOnly(election?: string) {
  if (election !== undefined) validateName('election', election);
  return <T extends (...args: any[]) => unknown>(
    target: object,
    propertyKey: string | symbol,
    descriptor: TypedPropertyDescriptor<T>,
  ): TypedPropertyDescriptor<T> => {
    if (typeof descriptor?.value !== 'function') {
      throw new InvalidUsageError(Messages.notAMethod('LeaderOnly', describeTarget(target, propertyKey)));
    }
    const where = describeTarget(target, propertyKey);
    // Sync methods stay sync (a skip returns undefined); async ones (see methodKind) get a resolved Promise.
    const kind = methodKind(descriptor.value, target, propertyKey, kindOfWrapper);
    const isAsync = kind === 'async';
    const refusal = refusalOfWrapper(descriptor.value);
    markDecorated(target);
    const wrapped = replaceMethod(descriptor, (original) =>
      // The shutdown drain first; each run counts as a guarded run (the leadership is kept until it ends).
      drainAware({ decorator: 'LeaderOnly', where, isAsync, track: true }, function leaderOnlyWrapper(this: unknown, ...args: unknown[]) {
        let leadership;
        let name: string | undefined;
        try {
          const runtime = resolveRuntime(this, 'LeaderOnly', where);
          name = election ?? runtime.elections.defaultElection;
          if (name === undefined) {
            throw new InvalidUsageError(Messages.leaderOnlyWithoutElection(where));
          }
          leadership = runtime.elections.leadership(name);
          if (!leadership) {
            runtime.logger.debug(Messages.log.leaderOnlySkipped(where, name));
            return isAsync ? Promise.resolve(undefined) : undefined;
          }
        } catch (err) {
          // Fail closed the way the method would fail: async methods reject, sync ones throw.
          if (isAsync) return Promise.reject(err);
          throw err;
        }
        return runWithLeadership(name, leadership, () => original.apply(this, args));
      }),
    );
    describeWrapper(wrapped.value, kind, refusal);
    return wrapped as TypedPropertyDescriptor<T>;
  };
}
