// `nest-etcd-coordination inspect [--json] [--watch]`.
import { parseArgs } from 'node:util';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { classify, type ClassifyHints } from './classify.js';
import { CliMessages } from './cli.messages.js';
import { connectionOptions, electionNames, INSPECT_OPTIONS, parsing, parsePermits, wholeNumber } from './cli-options.js';
import type { CliIo } from './cli-io.js';
import { withConnection, type Connection } from './connection.js';
import { renderJson, renderText, type RenderContext } from './render.js';
import { readSnapshot } from './snapshot.js';

/** Resolves after `ms` (or when `wake` is called, if given), at once when `signal` aborts; leaves no timer or listener. */
function pause(signal: AbortSignal, ms: number | undefined, onWake?: (wake: () => void) => void): Promise<void> {
  return new Promise<void>((resolve) => {
    if (signal.aborted) return resolve();
    const timer = ms === undefined ? undefined : setTimeout(done, ms);
    function done() {
      clearTimeout(timer);
      signal.removeEventListener('abort', done);
      resolve();
    }
    signal.addEventListener('abort', done, { once: true });
    onWake?.(done);
  });
}

/** Changes closer together than this are drawn once. */
const COALESCE_MS = 100;
/** Pause before drawing again after a failed read (etcd unreachable meanwhile). */
const DRAW_RETRY_MS = 1_000;
/** Pause before re-opening a watch that failed (compaction, cancellation). */
const WATCH_RETRY_MS = 500;

export async function inspectCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parsing('inspect', () => parseArgs({ args, options: INSPECT_OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(`${CliMessages.inspectHelp()}\n`);
    return 0;
  }
  if (positionals.length > 0) throw new InvalidUsageError(CliMessages.usage(CliMessages.extraArguments(positionals), 'inspect'));
  const exitAfter = values['watch-exit-after'] === undefined ? undefined : wholeNumber('--watch-exit-after', values['watch-exit-after']);
  if (exitAfter !== undefined && !values.watch) throw new InvalidUsageError(CliMessages.watchOnly());
  const options = connectionOptions(values, io.env);
  const hints: ClassifyHints = {
    elections: electionNames(values.election),
    locks: values.lock ?? [],
    permits: parsePermits(values.permits),
    fencingEpoch: options.fencingEpoch,
  };
  return withConnection(options, async (connection) => {
    if (!values.watch) {
      await draw(connection, hints, io, { json: values.json === true });
      return 0;
    }
    await watchLoop(connection, hints, io, { json: values.json === true, exitAfter });
    return 0;
  });
}

interface DrawOptions {
  json: boolean;
  watch?: { firstSeen: Map<string, number>; startedAt: number; drawing: number };
}

/** Reads the namespace and writes one drawing; returns the revision it read. */
async function draw(connection: Connection, hints: ClassifyHints, io: CliIo, options: DrawOptions): Promise<bigint> {
  const { ops, holder, options: resolved } = connection;
  const snapshot = await readSnapshot(ops, holder.client, resolved.namespace, resolved.requestTimeout);
  const inspection = classify(resolved.namespace, snapshot.revision, snapshot.keys, snapshot.leases, hints);
  const context: RenderContext = { endpoints: resolved.hosts, at: new Date() };
  const watch = options.watch;
  if (watch) {
    const now = Date.now();
    const present = new Set(snapshot.keys.map((k) => k.key.toString('utf8')));
    for (const key of present) if (!watch.firstSeen.has(key)) watch.firstSeen.set(key, watch.drawing === 1 ? watch.startedAt : now);
    for (const key of [...watch.firstSeen.keys()]) if (!present.has(key)) watch.firstSeen.delete(key);
    context.firstSeen = watch.firstSeen;
    context.watchStartedAt = watch.startedAt;
  }
  if (options.json) {
    io.stdout.write(`${renderJson(inspection, context)}\n`);
  } else {
    const text = renderText(inspection, context);
    if (!watch) io.stdout.write(text);
    // On a terminal: clear and draw again in place; elsewhere (a pipe, a test): one drawing after another.
    else if (io.stdout.isTTY) io.stdout.write(`\x1b[H\x1b[2J${text}`);
    else io.stdout.write(`--- drawing ${watch.drawing} ---\n${text}`);
  }
  return snapshot.revision;
}

/**
 * Draws, then follows the namespace with one prefix watch (through the
 * library's watch owner) and draws again after each burst of changes, until
 * `io.signal` aborts (Ctrl-C) or `exitAfter` drawings were made.
 */
async function watchLoop(connection: Connection, hints: ClassifyHints, io: CliIo, options: { json: boolean; exitAfter?: number }): Promise<void> {
  const stop = new AbortController();
  const onAbort = () => stop.abort();
  io.signal?.addEventListener('abort', onAbort, { once: true });
  const { watches, options: resolved } = connection;
  // etcd3 drops its connection when the client's last watcher is cancelled: keep one open.
  watches.openAnchor(resolved.namespace);
  const state = { firstSeen: new Map<string, number>(), startedAt: Date.now(), drawing: 0 };
  let changed = false;
  let wake: (() => void) | undefined;
  const notify = () => {
    changed = true;
    wake?.();
  };
  try {
    state.drawing++;
    let drawnRevision = await draw(connection, hints, io, { json: options.json, watch: state });
    if (options.exitAfter !== undefined && state.drawing >= options.exitAfter) return;
    const following = (async () => {
      let from = drawnRevision + 1n;
      while (!stop.signal.aborted) {
        const end = await watches.follow({ key: Buffer.from(resolved.namespace, 'utf8'), prefix: true, fromRevision: from }, stop.signal, (event) => {
          from = BigInt(event.kv.mod_revision) + 1n;
          notify();
        });
        if (end === 'aborted') return;
        // The watch failed (e.g. its revision was compacted): draw again and follow from there.
        notify();
        await pause(stop.signal, WATCH_RETRY_MS);
        from = drawnRevision + 1n;
      }
    })();
    while (!stop.signal.aborted) {
      if (!changed) {
        await pause(stop.signal, undefined, (done) => (wake = done));
        wake = undefined;
        continue;
      }
      await pause(stop.signal, COALESCE_MS);
      if (stop.signal.aborted) break;
      changed = false;
      state.drawing++;
      try {
        drawnRevision = await draw(connection, hints, io, { json: options.json, watch: state });
      } catch (err) {
        // etcd went away under a running watch: say so and keep trying, as an operator's screen should.
        state.drawing--;
        io.stderr.write(`${CliMessages.failed(err instanceof Error ? err.message : String(err))} (${CliMessages.retrying(DRAW_RETRY_MS)})\n`);
        changed = true;
        await pause(stop.signal, DRAW_RETRY_MS);
        continue;
      }
      if (options.exitAfter !== undefined && state.drawing >= options.exitAfter) break;
    }
    stop.abort();
    await following;
  } finally {
    stop.abort();
    io.signal?.removeEventListener('abort', onAbort);
  }
}
