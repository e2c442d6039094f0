// Process-wide registry of things the harness must tear down even when a test file dies
// without running its `after` hooks (crash, Ctrl-C, CI cancelling the job, process.exit()).
//
// Every cleanup function here MUST be synchronous: on 'exit' Node runs no more I/O, so
// children are SIGKILLed and directories removed with the *Sync APIs.

type SyncCleanup = () => void;

const cleanups = new Set<SyncCleanup>();
let installed = false;

/** Registers `fn` to run at process exit. Returns a function that unregisters it. */
export function registerCleanup(fn: SyncCleanup): () => void {
  installHandlers();
  cleanups.add(fn);
  return () => {
    cleanups.delete(fn);
  };
}

/** Runs (and forgets) every registered cleanup. Safe to call repeatedly. */
export function runAllCleanupsSync(): void {
  for (const fn of [...cleanups]) {
    cleanups.delete(fn);
    try {
      fn();
    } catch {
      // Best effort: one failing cleanup must not keep the others from running.
    }
  }
}

/** Sends `signal` to `pid`, ignoring "no such process". Returns false if it was already gone. */
export function signalPid(pid: number | undefined, signal: NodeJS.Signals): boolean {
  if (pid === undefined) return false;
  try {
    process.kill(pid, signal);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return false;
    throw err;
  }
}

function installHandlers(): void {
  if (installed) return;
  installed = true;

  // 'exit' also fires after a fatal uncaught exception and after process.exit().
  process.on('exit', runAllCleanupsSync);

  // A signal listener replaces Node's default "terminate" action, so after cleaning up we
  // re-raise the signal unless somebody else also listens and decides what to do.
  for (const signal of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    const onSignal = (): void => {
      runAllCleanupsSync();
      if (process.listenerCount(signal) === 1) {
        process.removeListener(signal, onSignal);
        process.kill(process.pid, signal);
      }
    };
    process.on(signal, onSignal);
  }

  // Under node:test the runner owns 'uncaughtException' (it fails the current test and
  // carries on), so only clean up when the exception is really going to kill the process;
  // killing every etcd on a survivable exception would cascade into unrelated failures.
  process.on('uncaughtExceptionMonitor', () => {
    if (process.listenerCount('uncaughtException') === 0) runAllCleanupsSync();
  });
}
