/** Texts of the observability part (re-exported by coordination.messages.ts; a file of its own to keep merges small). */
export const ObservabilityMessages = {
  outageStarted: (reason: string) =>
    `etcd is not answering (${reason}); holds end at their session deadline, calls fail with EtcdUnavailableError; ` +
    'further failures are logged at debug level until etcd answers again',
  outageEnded: (durationMs: number) => `etcd answers again after an outage of ${(durationMs / 1000).toFixed(1)} s`,
  subscriberFailed: (message: string) => `an events$ subscriber or metrics exporter threw (ignored): ${message}`,
  /** Problems of the logger, logLevel and metrics options (InvalidOptionsError). */
  option: {
    logger: () => 'must be a Nest LoggerService: an object with log, error and warn methods',
    logLevel: (levels: readonly string[], value: unknown) =>
      `must be one of ${levels.map((l) => `'${l}'`).join(', ')} or false; got ${typeof value === 'string' ? JSON.stringify(value) : typeof value}`,
    metrics: () => 'must be false or an object { meterProvider?, names? }',
    meterProvider: () => 'must be an OpenTelemetry MeterProvider (an object with a getMeter method)',
    names: () => 'must be a boolean',
    unknownMetricsKey: (key: string) => `has no option ${JSON.stringify(key)}; known: meterProvider, names`,
  },
} as const;
