import type { OnLocked } from '../queue/lockable.js';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { validateName } from '../etcd/keys.js';
import { declaredReturnType, describeTarget, isThenable, methodKind, replaceMethod } from './method-wrapper.js';
import { describeWrapper, kindOfWrapper, markDecorated, refusalOfWrapper, resolveRuntime } from './coordination.runtime.js';
import { validatePermits } from '../lock/permits.js';
import { validateTimeout } from '../queue/queue-spec.js';
import { currentLock } from '../context/coordination.context.js';
import { resolveFiringOptions, wantsFiring, type FiringOptions } from '../jobs/firing-options.js';
import { fireOnce } from '../jobs/firing-call.js';
import { drainAware } from '../shutdown/drain-aware.js';

/**
 * Options of {@link WithLock}. With `firing: 'once'` (on a `@Cron` / `@Interval`
 * method, see {@link FiringOptions}) every instance's scheduler may call it: the
 * first to get the lock claims the slot and runs it, the others do not run it.
 * `onLocked` then defaults to `'skip'` with overlap `'skip'`, else to `'wait'`.
 */
export interface WithLockDecoratorOptions extends FiringOptions {
  /** When the lock is held elsewhere: `wait` (default), `skip` (resolve undefined without running) or `fail` (LockHeldError). */
  onLocked?: OnLocked;
  /** With `wait`: give up after this many ms with LockTimeoutError. */
  timeout?: number;
  /** `exclusive` (default) mutex, or the shared `read` / exclusive `write` side of a read/write lock. */
  mode?: 'exclusive' | 'read' | 'write';
  /**
   * Bound the method's concurrency cluster-wide: at most `permits` (1 to 10000)
   * runs at once, FIFO (a counting semaphore named `name`, see
   * {@link LockService.semaphore}). Every caller of the name must use the same number.
   */
  permits?: number;
}

/** A method returning a Promise whose leading parameters are those of the key function. */
type AsyncMethod<A extends unknown[]> = (...args: [...A, ...any[]]) => Promise<unknown>;

/**
 * Runs the method while holding the distributed lock `name` (or the name
 * computed from the call's arguments). The method must return a Promise: on
 * a method that does not, this is a compile error, and where nothing checks
 * types (SWC), bootstrap fails with `InvalidUsageError` ("make it async"):
 * a method is accepted when it is an `async function` or its
 * `design:returntype` metadata is Promise. Without that metadata, its first
 * call that returns a non-Promise rejects, and later calls are refused.
 *
 * Inside the method, {@link currentLock} gives the fencing token and the
 * AbortSignal; calling another `@WithLock` method with the same name
 * re-enters instead of deadlocking.
 *
 * Fails closed: without an initialized CoordinationModule, or when etcd
 * cannot be reached, the method is not run and the call rejects.
 */
export function WithLock<A extends unknown[] = any[]>(
  name: string | ((...args: A) => string),
  options: WithLockDecoratorOptions = {},
) {
  if (typeof name !== 'function') validateName('lock', name);
  validateDecoratorOptions(options);
  const { onLocked: _o, timeout: _t, mode: _m, permits: _p, ...firingPart } = options;
  const firing = wantsFiring(firingPart) ? resolveFiringOptions('@WithLock', firingPart) : undefined;
  return <T extends AsyncMethod<A>>(
    target: object,
    propertyKey: string | symbol,
    descriptor: TypedPropertyDescriptor<T>,
  ): TypedPropertyDescriptor<T> => {
    if (typeof descriptor?.value !== 'function') {
      throw new InvalidUsageError(Messages.notAMethod('WithLock', describeTarget(target, propertyKey)));
    }
    const where = describeTarget(target, propertyKey);
    markDecorated(target);
    // A method that does not return a Promise would silently become async here (no type check under
    // SWC): refused at bootstrap when the metadata tells (see methodKind), otherwise at its first call.
    const kind = methodKind(descriptor.value, target, propertyKey, kindOfWrapper);
    const refusal = kind === 'sync'
      ? Messages.decoratedMethodNotAsync('WithLock', where, Messages.notAsyncDeclared(declaredReturnType(target, propertyKey)))
      : refusalOfWrapper(descriptor.value);
    let returnedNonPromise = false;
    const wrapped = replaceMethod(descriptor, (original) =>
      // The shutdown drain first: ticks skipped, direct calls refused, while running jobs finish.
      drainAware({ decorator: 'WithLock', where, isAsync: true, track: false }, async function withLockWrapper(this: unknown, ...args: unknown[]) {
        if (returnedNonPromise) throw new InvalidUsageError(Messages.decoratedMethodNotAsync('WithLock', where, Messages.notAsyncRefusedBefore()));
        const runtime = resolveRuntime(this, 'WithLock', where);
        const lockName = typeof name === 'function' ? name(...(args as A)) : name;
        const call = () => {
          const value = original.apply(this, args);
          if (!isThenable(value)) {
            returnedNonPromise = true;
            throw new InvalidUsageError(Messages.decoratedMethodNotAsync('WithLock', where, Messages.notAsyncReturned(describeValue(value))));
          }
          return value;
        };
        const run = firing
          ? () => {
              const hold = currentLock(lockName);
              if (!hold) throw new InvalidUsageError(Messages.notAMethod('WithLock', where)); // unreachable: run() holds it
              return fireOnce(runtime.jobs, this, propertyKey, where, firing, hold, call);
            }
          : call;
        const onLocked = options.onLocked ?? (firing ? (firing.overlap === 'skip' ? 'skip' : 'wait') : undefined);
        const acquireOptions = { onLocked, timeout: options.timeout };
        let ran = false;
        const runOnce = () => {
          ran = true;
          return run();
        };
        let result: unknown;
        if (options.permits !== undefined) {
          result = await runtime.locks.semaphore(lockName, options.permits).run(runOnce, acquireOptions);
        } else if (options.mode === 'read' || options.mode === 'write') {
          const rw = options.mode === 'read' ? runtime.locks.withReadLock : runtime.locks.withWriteLock;
          result = await rw.call(runtime.locks, lockName, runOnce, acquireOptions);
        } else {
          result = await runtime.locks.withLock(lockName, runOnce, acquireOptions);
        }
        if (!ran) runtime.logger.debug(Messages.log.withLockSkipped(where, lockName));
        return result;
      }),
    );
    describeWrapper(wrapped.value, 'async', refusal);
    return wrapped as TypedPropertyDescriptor<T>;
  };
}

function describeValue(value: unknown): string {
  return value === null ? 'null' : value === undefined ? 'undefined' : `a ${typeof value}`;
}

function validateDecoratorOptions(options: WithLockDecoratorOptions): void {
  if (typeof options !== 'object' || options === null) throw new InvalidUsageError(Messages.optionsNotObject('@WithLock'));
  const { onLocked, timeout, mode, permits } = options;
  if (onLocked !== undefined && !['wait', 'skip', 'fail'].includes(onLocked)) {
    throw new InvalidUsageError(`@WithLock: ${Messages.invalidOnLocked(onLocked)}`);
  }
  validateTimeout(timeout, '@WithLock');
  if (mode !== undefined && !['exclusive', 'read', 'write'].includes(mode)) {
    throw new InvalidUsageError(Messages.invalidMode(mode));
  }
  if (permits !== undefined) validatePermits(permits, '@WithLock');
  if (permits !== undefined && mode !== undefined && mode !== 'exclusive') {
    throw new InvalidUsageError(Messages.permitsWithMode());
  }
}
