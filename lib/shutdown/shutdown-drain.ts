import { AsyncLocalStorage } from 'node:async_hooks';
import { setMaxListeners } from 'node:events';
import { performance } from 'node:perf_hooks';
import { Logger } from '@nestjs/common';
import { LockAbortedError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { ShutdownMessages } from './shutdown.messages.js';
import { operationSignal } from '../util/abort.js';
import type { AcquireOptions } from '../queue/queue-spec.js';

/** Where the drain logs (the module's logger: Nest's `Logger` or the library's `CoordinationLogger`). */
export interface DrainLogger {
  log(message: string): void;
  warn(message: string): void;
}

/** How a drain ended: every guarded run finished, or `shutdownTimeout` passed first. */
export type DrainOutcome = 'drained' | 'timeout';

/**
 * The graceful drain of one application (internal; one per module instance).
 *
 * - `begin()` (at `onModuleDestroy`): new guarded calls from outside a
 *   running guarded run are refused with {@link ShutdownError}, and every
 *   wait started from outside one stops (its waiter key is removed). Holds
 *   and leaderships are kept: their signals do not abort.
 * - `settle()` (at `beforeApplicationShutdown`, while the HTTP server still
 *   serves): waits until every guarded run has finished, or until
 *   `shutdownTimeout` ms after `begin()`. The caller then ends every hold
 *   (signal first, then the key), resigns and revokes the session.
 *
 * A "guarded run" is `run`/`withLock`/`withPermit`/... of a lock, semaphore
 * or election, a `@WithLock` or `@LeaderOnly` method. Calls made from inside
 * one (in its async context) are part of it: they are still accepted during
 * the drain, so a running job can finish its work.
 *
 * Hand-written because no library fits: the drain must know which calls
 * belong to a running job (AsyncLocalStorage) and stop only the others.
 */
export class ShutdownDrain {
  private readonly stopController = new AbortController();
  /** The guarded run the current call chain belongs to; `open` turns false when it ends. */
  private readonly context = new AsyncLocalStorage<{ open: boolean }>();
  private active = 0;
  private startedAt?: number;
  private settling?: Promise<DrainOutcome>;
  private onIdle?: () => void;
  /** ShutdownErrors made by admit() and stoppable(): the call never ran. */
  private readonly refusals = new WeakSet<object>();

  constructor(
    /** ms from `begin()` until running runs lose their holds; 0 = at once. */
    readonly timeoutMs: number,
    private readonly logger: DrainLogger = new Logger('Coordination'),
  ) {
    // Every top-level wait listens to it: many listeners are expected, not a leak.
    setMaxListeners(0, this.stopController.signal);
  }

  /** Aborts (with ShutdownError) when the drain begins. */
  get stopSignal(): AbortSignal {
    return this.stopController.signal;
  }

  /** Whether the drain has begun (it never ends: after it, the application is closed). */
  get draining(): boolean {
    return this.stopController.signal.aborted;
  }

  /** Guarded runs in progress right now. */
  get running(): number {
    return this.active;
  }

  /**
   * Whether the current call chain is inside a guarded run that is still
   * running (work a run left behind, e.g. a timer, does not count after it ended).
   */
  insideRun(): boolean {
    return this.context.getStore()?.open === true;
  }

  /** Whether a new guarded call must be refused now: draining, and not made from inside a running guarded run. */
  refuses(): boolean {
    return this.draining && !this.insideRun();
  }

  /** Throws ShutdownError naming `what` when {@link refuses}. */
  admit(what: string): void {
    if (this.refuses()) throw this.refusal(ShutdownMessages.refused(what));
  }

  /** Whether `err` is a refusal of this drain (admit() or a stopped wait): the call did not run. */
  isRefusal(err: unknown): boolean {
    return typeof err === 'object' && err !== null && this.refusals.has(err);
  }

  private refusal(message: string): ShutdownError {
    const err = new ShutdownError(message);
    this.refusals.add(err);
    return err;
  }

  /**
   * Runs `fn` as a guarded run: the drain waits for the Promise it returns
   * (a synchronous result is not waited for). Nested runs count once.
   */
  run<T>(fn: () => T): T {
    if (this.insideRun()) return fn();
    const record = { open: true };
    let result: T;
    try {
      result = this.context.run(record, fn);
    } catch (err) {
      record.open = false;
      throw err;
    }
    if (!isPromiseLike(result)) {
      record.open = false;
      return result;
    }
    this.active++;
    // `finally` returns a new promise that rejects as `result` does: a rejection nobody handles is still reported.
    return Promise.resolve(result).finally(() => this.runEnded(record)) as T;
  }

  private runEnded(record: { open: boolean }): void {
    record.open = false;
    this.active--;
    if (this.active === 0) this.onIdle?.();
  }

  /**
   * `fn`, refused if the drain began after `stoppable()` admitted the call but before the hold
   * was handed to `fn` (the acquire finished during the drain): such a call is a wait that was
   * in progress, not a running run. Calls let through unwrapped (inside a run) are unaffected.
   */
  unlessStopped<A extends unknown[], R>(wrapped: AcquireOptions, given: AcquireOptions | undefined, fn: (...args: A) => R): (...args: A) => R {
    if (wrapped.signal === given?.signal) return fn;
    return (...args: A) => {
      if (this.draining) throw this.stopSignal.reason;
      return fn(...args);
    };
  }

  /**
   * Calls `wait` with the caller's options; for a top-level call, its wait
   * also stops when the drain begins, rejecting with ShutdownError naming
   * `what` (the engine removes our waiter key first). Calls from inside a
   * run, and options the engine will refuse anyway, pass through unchanged.
   */
  async stoppable<T>(what: string, options: AcquireOptions | undefined, wait: (options: AcquireOptions) => Promise<T>): Promise<T> {
    const valid = typeof options === 'object' && options !== null && (options.signal === undefined || options.signal instanceof AbortSignal);
    if (this.insideRun() || (options !== undefined && !valid)) return wait(options as AcquireOptions);
    // Without a caller's signal the drain's own signal is the wait's (no composite signal to make and dispose).
    const op = options?.signal ? operationSignal({ caller: options.signal, others: [this.stopSignal] }) : undefined;
    try {
      return await wait({ ...options, signal: op ? op.signal : this.stopSignal });
    } catch (err) {
      // Only our own abort is translated: its reason is the drain's, by identity.
      const stopped = op ? op.cause() === 'other' : this.stopSignal.aborted;
      if (stopped && (err === this.stopSignal.reason || (err instanceof LockAbortedError && err.cause === this.stopSignal.reason))) {
        throw this.refusal(ShutdownMessages.waitStopped(what));
      }
      throw err;
    } finally {
      op?.dispose();
    }
  }

  /** Starts the drain (idempotent): see the class comment. */
  begin(): void {
    if (this.draining) return;
    this.startedAt = performance.now();
    this.stopController.abort(new ShutdownError(Messages.shuttingDown()));
  }

  /**
   * Begins the drain if needed and resolves once every guarded run has
   * finished, or `timeoutMs` after `begin()`. One promise for every caller.
   * Its timer is cleared as soon as it resolves, so it never keeps the
   * process alive (it stays ref'd while it runs so that the shutdown always finishes).
   */
  settle(): Promise<DrainOutcome> {
    this.begin();
    return (this.settling ??= this.waitForRuns());
  }

  private async waitForRuns(): Promise<DrainOutcome> {
    const remaining = Math.max(0, Math.round(this.timeoutMs - (performance.now() - this.startedAt!)));
    if (this.active === 0) return 'drained';
    if (remaining === 0) {
      this.logger.warn(ShutdownMessages.timedOut(this.timeoutMs, this.active));
      return 'timeout';
    }
    this.logger.log(ShutdownMessages.draining(this.active, remaining));
    let timer: NodeJS.Timeout | undefined;
    const outcome = await new Promise<DrainOutcome>((resolve) => {
      this.onIdle = () => resolve('drained');
      timer = setTimeout(() => resolve('timeout'), remaining);
    });
    clearTimeout(timer);
    this.onIdle = undefined;
    if (outcome === 'drained') this.logger.log(ShutdownMessages.drained(Math.round(performance.now() - this.startedAt!)));
    else this.logger.warn(ShutdownMessages.timedOut(this.timeoutMs, this.active));
    return outcome;
  }
}

function isPromiseLike(value: unknown): value is PromiseLike<unknown> {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as PromiseLike<unknown>).then === 'function';
}
