import {
  EtcdAuthenticationFailedError,
  EtcdInvalidAuthTokenError,
  EtcdPermissionDeniedError,
  GRPCDeadlineExceededError,
  GRPCUnavailableError,
  GRPCUnauthenticatedError,
  ClientClosedError,
} from 'etcd3';
import {
  CoordinationError,
  EtcdAuthenticationError,
  EtcdPermissionError,
  EtcdUnavailableError,
} from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/** What an etcd error means to us. */
export type EtcdErrorKind = 'unavailable' | 'auth' | 'permission' | 'closed' | 'other';

/**
 * etcd3 opens a cockatiel circuit breaker per host (when it has more than one)
 * and then fails calls with cockatiel's BrokenCircuitError ("Execution
 * prevented because the circuit breaker is open") without sending them: every
 * host failed recently. Recognised by cockatiel's own marker property, not by
 * `instanceof`, so a second copy of cockatiel in node_modules cannot hide it.
 */
export function isOpenCircuitError(err: unknown): boolean {
  return err instanceof Error && ('isBrokenCircuitError' in err || 'isIsolatedCircuitError' in err);
}

export function classifyEtcdError(err: unknown): EtcdErrorKind {
  // Our own typed errors are verdicts already: only a single failed request may be retried.
  if (err instanceof EtcdUnavailableError) return err.retryable ? 'unavailable' : 'other';
  if (err instanceof CoordinationError) return 'other';
  if (isOpenCircuitError(err)) return 'unavailable';
  if (err instanceof EtcdAuthenticationFailedError || err instanceof GRPCUnauthenticatedError) return 'auth';
  if (err instanceof EtcdPermissionDeniedError) return 'permission';
  if (err instanceof ClientClosedError) return 'closed';
  if (err instanceof GRPCUnavailableError || err instanceof GRPCDeadlineExceededError || err instanceof EtcdInvalidAuthTokenError) {
    return 'unavailable';
  }
  const message = err instanceof Error ? err.message : String(err);
  if (/deadline|unavailable|ECONNREFUSED|ECONNRESET|No connection established|timed? ?out/i.test(message)) return 'unavailable';
  if (/permission denied/i.test(message)) return 'permission';
  // "user name is empty": no credentials sent to an etcd that has authentication enabled.
  if (/authentication failed|invalid auth|user name is empty/i.test(message)) return 'auth';
  return 'other';
}

/**
 * A TLS handshake that failed (untrusted or missing certificate, bad key): a
 * configuration problem that retrying does not fix, though etcd3 reports it as
 * UNAVAILABLE.
 */
export function isTlsFailure(err: unknown): boolean {
  const message = err instanceof Error ? err.message : String(err);
  return /handshake|SSL|certificate|TLS|ssl/i.test(message);
}

/** True for errors after which retrying the same request may succeed. */
export function isTransientEtcdError(err: unknown): boolean {
  return classifyEtcdError(err) === 'unavailable';
}

/**
 * Turns an etcd3 error into one of our typed errors. Messages name the hosts
 * and the user, never the password or key material.
 */
export function toCoordinationError(
  err: unknown,
  context: { hosts: readonly string[]; username?: string; what: string; timeoutMs?: number },
): Error {
  if (err instanceof CoordinationError) return err;
  const cause = err instanceof Error ? err.message : String(err);
  switch (classifyEtcdError(err)) {
    case 'auth':
      return new EtcdAuthenticationError(Messages.etcdAuthFailed(context.hosts, context.username ?? '(none)'));
    case 'permission':
      return new EtcdPermissionError(Messages.etcdPermissionDenied(context.hosts, context.what));
    case 'unavailable':
    case 'closed':
      if (isOpenCircuitError(err)) {
        return new EtcdUnavailableError(context.hosts, Messages.etcdNoHostServing(context.hosts, context.what), { cause: err });
      }
      if (isTlsFailure(err)) {
        return new EtcdUnavailableError(context.hosts, Messages.etcdTlsFailed(context.hosts, redact(cause)), { cause: err });
      }
      return new EtcdUnavailableError(
        context.hosts,
        Messages.etcdUnreachable(context.hosts, context.timeoutMs ?? 0, `${context.what}: ${redact(cause)}`),
        { cause: err },
      );
    default:
      return err instanceof Error ? err : new Error(cause);
  }
}

/** Removes anything that looks like PEM material or a token from a message. */
export function redact(message: string): string {
  return message
    .replace(/-----BEGIN [^-]+-----[\s\S]*?-----END [^-]+-----/g, '[redacted PEM]')
    .replace(/(token|password)[=:]\s*\S+/gi, '$1=[redacted]');
}
