import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';
import { runWithLeadership } from '../context/coordination.context.js';
import { describeTarget, methodKind, replaceMethod } from './method-wrapper.js';
import { describeWrapper, kindOfWrapper, markDecorated, refusalOfWrapper, resolveRuntime } from './coordination.runtime.js';
import { resolveFiringOptions, type FiringOptions } from '../jobs/firing-options.js';
import { fireOnce } from '../jobs/firing-call.js';

/** Options of {@link LeaderOnly}: the election, and once-per-firing scheduling (see {@link FiringOptions}). */
export interface LeaderOnlyOptions extends FiringOptions {
  /** The election to lead (default: the module's default election). */
  election?: string;
}
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
 *
 * With `{ firing: 'once' }` on a `@Cron` / `@Interval` method, each slot of
 * the schedule runs once in the cluster (claimed in etcd before the method
 * runs), across leadership changes and clock skew; `currentFiring()` gives
 * the slot, attempt and fencing token. See README "Once per firing".
 */
export function LeaderOnly(election?: string): LeaderOnlyDecorator;
export function LeaderOnly(options: LeaderOnlyOptions): LeaderOnlyDecorator;
export function LeaderOnly(election: string, options: FiringOptions): LeaderOnlyDecorator;
export function LeaderOnly(first?: string | LeaderOnlyOptions, second?: FiringOptions): LeaderOnlyDecorator {
  const options: LeaderOnlyOptions = typeof first === 'object' && first !== null ? first : { ...(second ?? {}) };
  const election = typeof first === 'string' || first === undefined ? first : options.election;
  if (typeof first !== 'string' && first !== undefined && (typeof first !== 'object' || first === null)) validateName('election', first);
  if (second !== undefined && (typeof second !== 'object' || second === null)) throw new InvalidUsageError(Messages.optionsNotObject('@LeaderOnly'));
  if (election !== undefined) validateName('election', election);
  const firing = options.firing !== undefined || Object.keys(options).some((k) => k !== 'election')
    ? resolveFiringOptions('@LeaderOnly', options, ['election'])
    : undefined;
  return <T extends (...args: any[]) => unknown>(
    target: object,
    propertyKey: string | symbol,
    descriptor: TypedPropertyDescriptor<T>,
  ): TypedPropertyDescriptor<T> => {
    if (typeof descriptor?.value !== 'function') {
      throw new InvalidUsageError(Messages.notAMethod('LeaderOnly', describeTarget(target, propertyKey)));
    }
    const where = describeTarget(target, propertyKey);
    // Sync methods stay sync (a skip returns undefined); async ones (see methodKind) get a resolved
    // Promise; a once-per-firing call claims in etcd first, so it always returns a Promise.
    const kind = firing !== undefined ? 'async' : methodKind(descriptor.value, target, propertyKey, kindOfWrapper);
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
        if (firing) {
          const held = leadership;
          return runWithLeadership(name, held, () =>
            fireOnce(resolveRuntime(this, 'LeaderOnly', where).jobs, this, propertyKey, where, firing, held, () => original.apply(this, args)),
          );
        }
        return runWithLeadership(name, leadership, () => original.apply(this, args));
      }),
    );
    describeWrapper(wrapped.value, kind, refusal);
    return wrapped as TypedPropertyDescriptor<T>;
  };
}

/** What {@link LeaderOnly} returns: a method decorator. */
export type LeaderOnlyDecorator = <T extends (...args: any[]) => unknown>(
  target: object,
  propertyKey: string | symbol,
  descriptor: TypedPropertyDescriptor<T>,
) => TypedPropertyDescriptor<T>;
