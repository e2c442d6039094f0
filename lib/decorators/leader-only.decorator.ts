import { InvalidUsageError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, ShutdownMessages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';
import { runWithLeadership } from '../context/coordination.context.js';
import { describeTarget, isAsyncFunction, replaceMethod } from './method-wrapper.js';
import { isScheduled, markDecorated, resolveRuntime, type CoordinationRuntime } from './coordination.runtime.js';

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
    const isAsync = isAsyncFunction(descriptor.value);
    markDecorated(target);
    return replaceMethod(descriptor, (original) =>
      function leaderOnlyWrapper(this: unknown, ...args: unknown[]) {
        let leadership;
        let name: string | undefined;
        let runtime: CoordinationRuntime;
        try {
          runtime = resolveRuntime(this, 'LeaderOnly', where);
          name = election ?? runtime.elections.defaultElection;
          if (name === undefined) {
            throw new InvalidUsageError(Messages.leaderOnlyWithoutElection(where));
          }
          // During the shutdown drain no new leader-only run starts: a scheduler tick is skipped, a direct call refused.
          if (runtime.drain.refuses()) {
            if (isScheduled(leaderOnlyWrapper)) {
              runtime.logger.debug(ShutdownMessages.scheduledSkipped(where));
              return isAsync ? Promise.resolve(undefined) : undefined;
            }
            throw new ShutdownError(ShutdownMessages.refused(`@LeaderOnly ${where}`));
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
        // A guarded run: shutdown keeps the leadership until it ends (or shutdownTimeout passes).
        const lead = leadership;
        return runtime.drain.run(() => runWithLeadership(name!, lead, () => original.apply(this, args)));
      },
    ) as TypedPropertyDescriptor<T>;
  };
}
