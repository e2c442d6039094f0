import { EtcdUnavailableError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { ShutdownMessages } from './shutdown.messages.js';
import { isScheduled, resolveRuntime, type CoordinationRuntime } from '../decorators/coordination.runtime.js';

type MethodWrapper = (this: unknown, ...args: unknown[]) => unknown;

/** How {@link drainAware} wraps one decorated method. */
export interface DrainAwareOptions {
  decorator: 'WithLock' | 'LeaderOnly';
  /** "Class.method()". */
  where: string;
  /** Whether the method returns a Promise (refusals and skips then do too). */
  isAsync: boolean;
  /** Count each call as a guarded run (@LeaderOnly; @WithLock's runs are counted by LockService, waits included). */
  track: boolean;
}

/**
 * Puts the shutdown drain in front of a `@WithLock`/`@LeaderOnly` wrapper
 * (internal). During the drain, a call from outside a running guarded run
 * is a scheduler tick to skip (debug log) when `@nestjs/schedule` calls the
 * method (@Cron/@Interval/@Timeout on it), else a caller to refuse with
 * ShutdownError. A tick still waiting for its lock when the drain began is
 * skipped too. Unbound calls go straight to `inner`, which fails closed.
 */
export function drainAware(options: DrainAwareOptions, inner: MethodWrapper): MethodWrapper {
  const { decorator, where, isAsync, track } = options;
  return function drainAwareWrapper(this: unknown, ...args: unknown[]) {
    let runtime: CoordinationRuntime;
    try {
      runtime = resolveRuntime(this, decorator, where);
    } catch {
      return inner.apply(this, args); // it reports the same error, the way the method would
    }
    const { drain, logger } = runtime;
    // Looked up on the installed wrapper: @Cron above or below our decorator puts its metadata here.
    const scheduled = isScheduled(drainAwareWrapper);
    const skip = () => {
      logger.debug(ShutdownMessages.scheduledSkipped(where));
      return isAsync ? Promise.resolve(undefined) : undefined;
    };
    if (drain.refuses()) {
      if (scheduled) return skip();
      const refusal = new ShutdownError(ShutdownMessages.refused(`@${decorator} ${where}`));
      if (isAsync) return Promise.reject(refusal);
      throw refusal;
    }
    const result = track ? drain.run(() => inner.apply(this, args)) : inner.apply(this, args);
    if (!scheduled || !isAsync || !(result instanceof Promise)) return result;
    return result.catch((err: unknown) => {
      if (drain.isRefusal(err)) return skip();
      // A scheduler tick during an etcd outage: nobody awaits it, and @nestjs/schedule would log a
      // stack trace per tick. The outage is logged once at its start and once at its end
      // (lib/observability); each skipped tick only at debug. Direct calls still reject.
      if (err instanceof EtcdUnavailableError) {
        logger.debug(Messages.log.scheduledSkippedOutage(where, err.message));
        return undefined;
      }
      throw err;
    });
  };
}
