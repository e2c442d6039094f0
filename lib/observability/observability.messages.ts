/** Log texts of the observability part (kept apart from coordination.messages.ts to keep merges small). */
export const ObservabilityMessages = {
  outageStarted: (reason: string) =>
    `etcd is not answering (${reason}); holds end at their session deadline, calls fail with EtcdUnavailableError; ` +
    'further failures are logged at debug level until etcd answers again',
  outageEnded: (durationMs: number) => `etcd answers again after an outage of ${(durationMs / 1000).toFixed(1)} s`,
  subscriberFailed: (message: string) => `an events$ subscriber or metrics exporter threw (ignored): ${message}`,
} as const;
