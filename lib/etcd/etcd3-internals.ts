import { Logger } from '@nestjs/common';
import type { Etcd3 } from 'etcd3';
import { redact } from './etcd-errors.js';
import { Messages } from '../coordination.messages.js';

/**
 * The only file that touches etcd3 1.1.x internals. It exists for one bug:
 * etcd3 attaches watchers one at a time and then waits forever for a refused
 * watcher's create response, so every later watch of the client hangs. The
 * usual cause is an auth token etcd no longer accepts (it expired, or etcd
 * restarted and forgot its simple tokens): etcd3 refreshes tokens on unary
 * calls only, and a watch stream keeps the token it was opened with.
 *
 * {@link checkEtcd3Internals} runs at bootstrap (and in a test) so that an
 * etcd3 upgrade that renames these fields is reported loudly instead of
 * silently losing the workaround.
 */
interface Etcd3WatchInternals {
  watchManager?: { state?: unknown; stream?: unknown; handleError?: unknown };
  pool?: { authenticator?: { invalidateMetadata?: unknown } };
}

/** etcd3's WatchManager state "Connected" (enum value in 1.1.x). */
const WATCH_STREAM_CONNECTED = 2;
/**
 * At most one reset per client this often: a refusal that persists (a role that does not
 * cover the namespace) must not make every retry re-authenticate and reopen the stream.
 */
const MIN_RESET_INTERVAL_MS = 5_000;
/** Watch streams already reopened (one reset per stream). */
const resetWatchStreams = new WeakSet<object>();
const lastWatchReset = new WeakMap<object, number>();
const deferredWatchReset = new WeakSet<object>();
const logger = new Logger('Coordination');

/**
 * The etcd3 internals the workaround relies on that this client lacks (empty
 * when all are present).
 */
export function missingEtcd3Internals(client: Etcd3): string[] {
  const internals = client as unknown as Etcd3WatchInternals;
  const missing: string[] = [];
  const manager = internals.watchManager;
  if (!manager || typeof manager !== 'object') missing.push('watchManager');
  else {
    if (typeof manager.handleError !== 'function') missing.push('watchManager.handleError()');
    // `stream` only exists while connected; recoverRefusedWatch checks it then.
    if (typeof manager.state !== 'number') missing.push('watchManager.state');
  }
  if (typeof internals.pool?.authenticator?.invalidateMetadata !== 'function') {
    missing.push('pool.authenticator.invalidateMetadata()');
  }
  return missing;
}

/** Logs an error naming what is missing (see {@link missingEtcd3Internals}); returns whether all is there. */
export function checkEtcd3Internals(client: Etcd3): boolean {
  const missing = missingEtcd3Internals(client);
  if (missing.length > 0) logger.error(Messages.log.etcd3InternalsMissing(missing));
  return missing.length === 0;
}

/**
 * Call when etcd refused to *create* a watch of `client` (the watcher failed
 * before it was connected on the current stream): drops the cached token and
 * reopens the stream through etcd3's own reconnect path, which
 * re-authenticates and re-creates every attached watcher from its last
 * revision (no event is lost).
 */
export function recoverRefusedWatch(client: Etcd3, err: unknown): void {
  const internals = client as unknown as Etcd3WatchInternals;
  const manager = internals.watchManager as { state?: unknown; stream?: object; handleError?: (e: Error) => void } | undefined;
  const stream = manager?.stream;
  if (!manager || typeof manager.handleError !== 'function' || manager.state !== WATCH_STREAM_CONNECTED || !stream) return;
  if (resetWatchStreams.has(stream)) return;
  const wait = (lastWatchReset.get(manager) ?? -Infinity) + MIN_RESET_INTERVAL_MS - Date.now();
  if (wait > 0) {
    if (!deferredWatchReset.has(manager)) {
      deferredWatchReset.add(manager);
      setTimeout(() => {
        deferredWatchReset.delete(manager);
        recoverRefusedWatch(client, err);
      }, wait).unref();
    }
    return;
  }
  lastWatchReset.set(manager, Date.now());
  resetWatchStreams.add(stream);
  const reason = redact(err instanceof Error ? err.message : String(err));
  logger.warn(Messages.log.watchRefused(reason));
  const authenticator = internals.pool?.authenticator as { invalidateMetadata?: () => void } | undefined;
  authenticator?.invalidateMetadata?.();
  manager.handleError(new Error(Messages.watchCreationRefused(reason)));
}
