/** Why a composed operation signal aborted. */
export type AbortCause = 'timeout' | 'caller' | 'other';

export interface OperationSignal {
  readonly signal: AbortSignal;
  /** Which input aborted first (undefined while not aborted). */
  cause(): AbortCause | undefined;
  /** Removes listeners from the inputs and clears the timer. Always call it. */
  dispose(): void;
}

const TIMEOUT_REASON = Symbol('timeout');

/**
 * One signal for an operation: the caller's signal, an optional timeout, and
 * internal signals (session end, shutdown). Unlike AbortSignal.timeout/any it
 * owns its timer and listeners and releases them in dispose(), so a finished
 * operation leaves nothing behind. (A {@link LazyOperationSignal} whose
 * composite is made at once.)
 */
export function operationSignal(options: {
  timeoutMs?: number;
  caller?: AbortSignal;
  others?: readonly AbortSignal[];
}): OperationSignal {
  const inputs: Array<readonly [AbortInput, AbortCause]> = [];
  if (options.caller) inputs.push([options.caller, 'caller']);
  for (const other of options.others ?? []) inputs.push([other, 'other']);
  const op = new LazyOperationSignal(inputs, options.timeoutMs);
  // Made at once: its listeners record which input aborted first, whenever anyone looks.
  void op.signal;
  return op;
}

/**
 * Many handlers of one signal's abort behind ONE listener (Node's EventTarget
 * listeners cost microseconds per add and remove, paid on every lock cycle
 * when each hold listens to its session): returns `add(handler)`, which calls
 * `handler` once at the abort (at once if it happened) and returns its remover.
 */
export function abortHandlers(signal: AbortSignal): (handler: () => void) => () => void {
  const handlers = new Set<() => void>();
  signal.addEventListener('abort', () => {
    const now = [...handlers];
    handlers.clear();
    for (const handler of now) handler();
  }, { once: true });
  return (handler) => {
    if (signal.aborted) {
      handler();
      return () => undefined;
    }
    handlers.add(handler);
    return () => void handlers.delete(handler);
  };
}

/** Resolves after `ms`, or rejects with the signal's reason when it aborts first. */
export function sleep(ms: number, signal?: AbortSignal): Promise<void> {
  if (signal?.aborted) return Promise.reject(signal.reason);
  return new Promise((resolve, reject) => {
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal!.reason);
    };
    const timer = setTimeout(() => {
      signal?.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal?.addEventListener('abort', onAbort, { once: true });
  });
}

/** Exponential backoff with full jitter, capped. */
export function backoffDelay(attempt: number, baseMs = 100, capMs = 5_000): number {
  const ceiling = Math.min(capMs, baseMs * 2 ** Math.min(attempt, 16));
  return Math.round(ceiling / 2 + Math.random() * (ceiling / 2));
}

/** Settles like `promise`, or rejects with the signal's reason if it aborts first. */
export function raceSignal<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (v) => { signal.removeEventListener('abort', onAbort); resolve(v); },
      (e) => { signal.removeEventListener('abort', onAbort); reject(e); },
    );
  });
}

/** An input of a {@link LazyOperationSignal}: a signal, or another lazy one. */
export type AbortInput = AbortSignal | LazyOperationSignal;

/**
 * The signal behind {@link operationSignal}, also made directly by the queue
 * engine (whose inputs may be other lazy signals). The composite AbortSignal
 * (an AbortController and a listener on each input: microseconds on every
 * lock cycle) is made only when something asks for {@link signal}, i.e. when
 * the operation has to wait. {@link aborted}, {@link reason} and
 * {@link cause} read the inputs directly.
 */
export class LazyOperationSignal implements OperationSignal {
  private controller?: AbortController;
  private why?: AbortCause;
  private reasonValue: unknown;
  private readonly cleanups: Array<() => void> = [];
  private timer?: NodeJS.Timeout;

  constructor(
    private readonly inputs: ReadonlyArray<readonly [AbortInput, AbortCause]>,
    timeoutMs?: number,
  ) {
    if (timeoutMs !== undefined && this.poll() === undefined) {
      // An input that aborted before the timeout, unnoticed while nobody looked, still comes first.
      this.timer = setTimeout(() => {
        if (this.poll() === undefined) this.abort('timeout', TIMEOUT_REASON);
      }, timeoutMs);
    }
  }

  /** True once any input aborted or the timeout passed. */
  get aborted(): boolean {
    return this.poll() !== undefined;
  }

  /** The reason of the first input that aborted (or the timeout's). */
  get reason(): unknown {
    this.poll();
    return this.reasonValue;
  }

  /** Which input aborted first (undefined while not aborted). */
  cause(): AbortCause | undefined {
    return this.poll();
  }

  /** The composite signal, made on first use. */
  get signal(): AbortSignal {
    if (!this.controller) {
      this.controller = new AbortController();
      if (this.poll() !== undefined) this.controller.abort(this.reasonValue);
      else {
        for (const [input, which] of this.inputs) {
          const source = input instanceof LazyOperationSignal ? input.signal : input;
          const listener = () => this.abort(which, source.reason);
          source.addEventListener('abort', listener, { once: true });
          this.cleanups.push(() => source.removeEventListener('abort', listener));
        }
      }
    }
    return this.controller.signal;
  }

  /** Removes listeners from the inputs and clears the timer. Always call it. */
  dispose(): void {
    clearTimeout(this.timer);
    for (const cleanup of this.cleanups.splice(0)) cleanup();
  }

  private poll(): AbortCause | undefined {
    if (this.why === undefined) {
      for (const [input, which] of this.inputs) {
        if (input.aborted) {
          this.abort(which, input.reason);
          break;
        }
      }
    }
    return this.why;
  }

  private abort(which: AbortCause, reason: unknown): void {
    if (this.why !== undefined) return;
    this.why = which;
    this.reasonValue = reason;
    clearTimeout(this.timer);
    this.controller?.abort(reason);
  }
}
