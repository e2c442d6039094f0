// Texts of the graceful drain on shutdown (issue 12.6), re-exported by coordination.messages.ts.

/** Texts of the shutdown drain. Never include a secret. */
export const ShutdownMessages = {
  /** A new guarded call made while the application drains (or after it closed). */
  refused: (what: string) =>
    `${what} refused: the application is shutting down (running jobs are draining; no new locks, runs or campaigns are accepted)`,
  /** A wait that was in progress when the drain began. */
  waitStopped: (what: string) => `${what} stopped waiting: the application is shutting down`,
  draining: (runs: number, remainingMs: number) =>
    `shutting down: waiting up to ${remainingMs} ms (shutdownTimeout) for ${runs} running guarded run(s) to finish`,
  drained: (ms: number) => `shutting down: every guarded run finished after ${ms} ms; releasing locks and resigning`,
  timedOut: (timeoutMs: number, runs: number) =>
    `shutting down: shutdownTimeout of ${timeoutMs} ms reached with ${runs} guarded run(s) still running; ` +
    'aborting their signals, then releasing their locks and resigning',
  scheduledSkipped: (target: string) => `${target} skipped: the application is shutting down`,
  infiniteTimeout: () =>
    'must be a finite number of ms (Infinity is not accepted: a job that never ends would hold the shutdown, and its locks, ' +
    'until the process is killed; give the longest a job may take, e.g. your orchestrator\'s grace period minus a few seconds)',
} as const;
