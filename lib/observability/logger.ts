import { Logger, type LoggerService } from '@nestjs/common';
import { redact } from '../etcd/etcd-errors.js';

/** How much the library logs: this level and the more severe ones; `false` logs nothing. */
export type CoordinationLogLevel = 'error' | 'warn' | 'log' | 'debug' | 'verbose';

/** The levels from the most severe: a threshold keeps a prefix of this list. */
export const LOG_LEVELS: readonly CoordinationLogLevel[] = ['error', 'warn', 'log', 'debug', 'verbose'];

/** The Nest logger context of every line. */
export const LOG_CONTEXT = 'Coordination';

/**
 * The library's logger for one module instance (internal): filters by the
 * `logLevel` option, prefixes every line with the identity and the
 * namespace, redacts anything that looks like a secret, and forwards to the
 * `logger` option (a Nest LoggerService; default Nest's `Logger` with the
 * context `Coordination`). While etcd is in an outage (`quiet()`), ordinary
 * warnings go out at debug level: the outage itself is reported by
 * {@link notice} once when it starts and once when it ends.
 */
export class CoordinationLogger {
  private readonly target: LoggerService;
  private readonly passContext: boolean;
  private readonly threshold: number;
  private readonly prefix: string;

  constructor(
    context: { identity: string; namespace: string },
    options: { logger?: LoggerService; logLevel?: CoordinationLogLevel | false } = {},
    private readonly quiet: () => boolean = () => false,
  ) {
    this.target = options.logger ?? new Logger(LOG_CONTEXT);
    // A user's LoggerService gets the context as the last argument, Nest's convention.
    this.passContext = options.logger !== undefined;
    this.threshold = options.logLevel === false ? -1 : LOG_LEVELS.indexOf(options.logLevel ?? 'verbose');
    this.prefix = `[identity=${context.identity} namespace=${JSON.stringify(context.namespace)}] `;
  }

  /** Whether lines of `level` are written at all. */
  enabled(level: CoordinationLogLevel): boolean {
    return LOG_LEVELS.indexOf(level) <= this.threshold;
  }

  error(message: string): void {
    this.write('error', message);
  }

  /** A warning; demoted to debug while an etcd outage is being reported. */
  warn(message: string): void {
    this.write(this.quiet() ? 'debug' : 'warn', message);
  }

  /** A warning that is never demoted (outage start and end, session lost). */
  notice(message: string): void {
    this.write('warn', message);
  }

  log(message: string): void {
    this.write('log', message);
  }

  debug(message: string): void {
    this.write('debug', message);
  }

  verbose(message: string): void {
    this.write('verbose', message);
  }

  private write(level: CoordinationLogLevel, message: string): void {
    if (!this.enabled(level)) return;
    const line = this.prefix + redact(message);
    const target = this.target;
    // LoggerService makes debug and verbose optional: fall back to log.
    const write = (target[level] ?? target.log).bind(target);
    try {
      if (this.passContext) write(line, LOG_CONTEXT);
      else write(line);
    } catch {
      // A failing logger must not break a lock or a session.
    }
  }
}
