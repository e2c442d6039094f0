import type { LoggerService } from '@nestjs/common';
import { LOG_LEVELS, type CoordinationLogLevel } from './logger.js';
import type { MeterProviderLike } from './metrics.js';
import { ObservabilityMessages } from './observability.messages.js';

const problems = ObservabilityMessages.option;

/** The observability options after validation (internal). */
export interface ResolvedObservabilityOptions {
  logger?: LoggerService;
  logLevel: CoordinationLogLevel | false;
  metrics: false | { meterProvider?: MeterProviderLike; names?: boolean };
}


/** Validates `logger`, `logLevel` and `metrics`; `fail` throws InvalidOptionsError naming the option. */
export function validateObservabilityOptions(
  input: { logger?: unknown; logLevel?: unknown; metrics?: unknown },
  fail: (option: string, problem: string) => never,
): ResolvedObservabilityOptions {
  const { logger, logLevel, metrics } = input;
  if (logger !== undefined) {
    const l = logger as Partial<Record<'log' | 'error' | 'warn', unknown>> | null;
    if (typeof l !== 'object' || l === null || typeof l.log !== 'function' || typeof l.error !== 'function' || typeof l.warn !== 'function') {
      fail('logger', problems.logger());
    }
  }
  if (logLevel !== undefined && logLevel !== false && !LOG_LEVELS.includes(logLevel as CoordinationLogLevel)) {
    fail('logLevel', problems.logLevel(LOG_LEVELS, logLevel));
  }
  let resolvedMetrics: ResolvedObservabilityOptions['metrics'] = {};
  if (metrics === false) resolvedMetrics = false;
  else if (metrics !== undefined) {
    if (typeof metrics !== 'object' || metrics === null || Array.isArray(metrics)) fail('metrics', problems.metrics());
    const m = metrics as { meterProvider?: unknown; names?: unknown };
    for (const key of Object.keys(m)) if (key !== 'meterProvider' && key !== 'names') fail('metrics', problems.unknownMetricsKey(key));
    if (m.meterProvider !== undefined && typeof (m.meterProvider as MeterProviderLike | null)?.getMeter !== 'function') {
      fail('metrics.meterProvider', problems.meterProvider());
    }
    if (m.names !== undefined && typeof m.names !== 'boolean') fail('metrics.names', problems.names());
    resolvedMetrics = m as ResolvedObservabilityOptions['metrics'];
  }
  return {
    ...(logger === undefined ? {} : { logger: logger as LoggerService }),
    logLevel: (logLevel as CoordinationLogLevel | false | undefined) ?? 'verbose',
    metrics: resolvedMetrics,
  };
}
