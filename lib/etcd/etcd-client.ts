import { Etcd3, isRecoverableError, type IOptions } from 'etcd3';
import { circuitBreaker, ConsecutiveBreaker, handleWhen, noop, retry } from 'cockatiel';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { InvalidOptionsError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { redact } from './etcd-errors.js';

/**
 * Owns the etcd client of the module: either one we created (and must close)
 * or one the user passed in (which we must never close).
 */
export class EtcdClientHolder {
  private isClosed = false;
  constructor(
    readonly client: Etcd3,
    readonly owned: boolean,
    readonly hosts: readonly string[],
    readonly username: string | undefined,
  ) {}

  /** True once the module shut down (the client may still be open if the user owns it). */
  get closed(): boolean {
    return this.isClosed;
  }

  close(): void {
    if (this.isClosed) return;
    this.isClosed = true;
    if (this.owned) this.client.close();
  }
}

function stripScheme(host: string): string {
  return host.replace(/^https?:\/\//, '').replace(/\/$/, '');
}

/** Creates (or wraps) the client for the resolved options. */
export function createEtcdClientHolder(options: ResolvedCoordinationOptions): EtcdClientHolder {
  if (options.client) return new EtcdClientHolder(options.client, false, options.hosts, undefined);
  const hosts = options.hosts.map(stripScheme);
  const clientOptions: IOptions = {
    hosts,
    // Without HTTP/2 pings a connection that went silent (partition, dead
    // peer) is never noticed and every call on it hangs until its deadline.
    // etcd refuses pings more often than every 5 s (--grpc-keepalive-min-time).
    grpcOptions: {
      'grpc.keepalive_time_ms': 6_000,
      'grpc.keepalive_timeout_ms': 3_000,
      // grpc-js waits forever for the HTTP/2 handshake of a connection dialled during a
      // partition (its SETTINGS frame was lost), and queues every call on it. etcd3 closes a
      // host's channels after a failed call, but with grpc-js's process-wide subchannel pool
      // the next channel picks up the same stuck connection (for ~10 s, until the pool's
      // cleanup). A pool per channel makes etcd3's reset dial a new connection.
      'grpc.use_local_subchannel_pool': 1,
      // grpc-js backs off reconnects from 1 s up to 120 s: after a long outage the first
      // connection attempt after the heal could be minutes away. Keep it short.
      'grpc.initial_reconnect_backoff_ms': 250,
      'grpc.max_reconnect_backoff_ms': 1_000,
    },
    // etcd3's default per-host circuit breaker blocks every call (keepalives
    // included) for 5 s after three failures; with one host that only delays
    // recovery. Our own loops retry, so we keep one quick retry for transient
    // errors (all our transactions are idempotent) and break circuits only
    // when there are other hosts to fail over to.
    faultHandling: {
      host: () =>
        hosts.length > 1
          ? circuitBreaker(handleWhen(isRecoverableError), { halfOpenAfter: 1_000, breaker: new ConsecutiveBreaker(3) })
          : noop,
      global: retry(handleWhen(isRecoverableError), { maxAttempts: 1 }),
    },
  };
  if (options.auth) clientOptions.auth = { username: options.auth.username, password: options.auth.password };
  if (options.credentials) clientOptions.credentials = options.credentials as IOptions['credentials'];
  let client: Etcd3;
  try {
    client = new Etcd3(clientOptions);
  } catch (err) {
    // grpc builds the TLS context here: a key that does not belong to the certificate, or
    // PEM that does not parse, throws a raw OpenSSL error. OpenSSL's message names the
    // problem, never the key material.
    if (!options.credentials) throw err;
    throw new InvalidOptionsError(
      'credentials',
      Messages.invalidOption('credentials', `cannot be used for TLS (${redact(err instanceof Error ? err.message : String(err))}). Check that privateKey belongs to certChain and that all three are PEM.`),
    );
  }
  return new EtcdClientHolder(client, true, options.hosts, options.auth?.username);
}
