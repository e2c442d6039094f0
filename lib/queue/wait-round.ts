import type { EtcdOps, KeyRange, OlderKey, QueueView } from '../etcd/etcd-ops.js';
import type { EtcdWatches, WatchEvent, WatchTarget } from '../etcd/watch.js';
import { operationSignal } from '../util/abort.js';
import type { TurnPolicy, WaitTarget } from './turn-policy.js';

/** How one wait round ended (internal). */
export type RoundOutcome =
  /** We hold: the older keys we knew are gone; our key was there at this revision. */
  | { heldAt: bigint }
  /** The catch-up read found the queue changed: stand again on this view (no further read). */
  | { view: QueueView }
  /** Our own key was deleted. */
  | 'gone'
  /** Only a re-read can tell where we stand. */
  | 'recheck'
  /** The watch failed (compaction, refusal, a lost stream): back off, then re-read. */
  | 'failed';

/** What a wait round needs of its waiter (internal). */
export interface RoundContext {
  ops: EtcdOps;
  watches: EtcdWatches;
  policy: TurnPolicy;
  myKey: Buffer;
  myRevision: bigint;
  what: string;
  /** Checks a view before it is used (the shape of the keys); throws to end the wait. */
  accept(view: QueueView): void;
}

/**
 * One wait of a waiter whose read (`view`, at revision H) said to wait on
 * `wait`. Why this shape: etcd delivers the events of a watch that starts at
 * a PAST revision only from its "unsynced" loop, every 100 ms, and the
 * revision has usually moved on by the time a contended waiter's watch is
 * created, so a hand-off would wait up to 100 ms (measured: 35 ms p50). So
 * the watch starts from "now" (synced: an event reaches it in a few ms), and
 * when etcd says it was created at a revision W > H, the events in (H, W]
 * it will not deliver are covered by ONE catch-up read of the queue (at
 * R >= W: reads are linearizable) before any event is used; events up to the
 * revision of the last read are ignored, they are in that read. If nothing
 * happened between the read and the watch (W <= H), there is no extra read.
 * The one-watch ordering argument of docs/handoff.md is unchanged: every
 * event after the last read arrives on this one watch, in revision order.
 */
export async function waitRound(ctx: RoundContext, wait: WaitTarget, view: QueueView, signal: AbortSignal): Promise<RoundOutcome> {
  let floor = view.headerRevision;
  let handle = handlerFor(ctx, wait);
  let outcome: RoundOutcome | undefined;
  let failure: { error: unknown } | undefined;
  /** Events seen before the watch was created and caught up: handled after. */
  let early: WatchEvent[] | undefined = [];
  const stop = new AbortController();
  const finish = (result: RoundOutcome) => {
    outcome ??= result;
    stop.abort();
  };
  const deliver = (event: WatchEvent) => {
    if (outcome !== undefined || BigInt(event.kv.mod_revision) <= floor) return;
    const result = handle(event);
    if (result === undefined) return;
    ctx.watches.stats.wakeups++;
    finish(result);
  };
  const caughtUp = () => {
    const events = early ?? [];
    early = undefined;
    for (const event of events) deliver(event);
  };
  const catchUp = async () => {
    const fresh = await ctx.ops.checkOlder(ctx.myKey, ctx.myRevision, ctx.policy.range, ctx.policy.olderLimit, ctx.what);
    if (outcome !== undefined) return;
    if (!fresh) return finish('gone');
    ctx.accept(fresh);
    if (fresh.headerRevision > floor) floor = fresh.headerRevision;
    const standing = ctx.policy.standing(fresh.older, fresh.more, ctx.myRevision);
    if (standing.holds) return finish({ heldAt: fresh.headerRevision });
    if (!sameWatch(standing.wait, wait)) return finish({ view: fresh });
    handle = handlerFor(ctx, standing.wait);
    caughtUp();
  };
  const onCreated = (createdAt: bigint | undefined) => {
    if (createdAt !== undefined && createdAt <= floor) return caughtUp(); // nothing happened in between
    catchUp().catch((error: unknown) => {
      failure ??= { error };
      finish('failed');
    });
  };
  const both = operationSignal({ others: [signal, stop.signal] });
  let end: Awaited<ReturnType<EtcdWatches['follow']>>;
  try {
    end = await ctx.watches.follow({ ...targetOf(wait), fromRevision: 0n, onCreated }, both.signal, (event) => {
      if (early) early.push(event);
      else deliver(event);
      return outcome !== undefined;
    });
  } finally {
    both.dispose();
  }
  if (failure) throw failure.error;
  if (outcome !== undefined) return outcome;
  if (end === 'aborted') throw signal.reason;
  return end === 'failed' ? 'failed' : 'recheck';
}

/** What a wait watches: its predecessor's key, or for a 'turn' wait the name's prefix (deletions, with previous key-values). */
function targetOf(wait: WaitTarget): Omit<WatchTarget, 'fromRevision'> {
  switch (wait.on) {
    case 'delete':
      return { key: wait.key, deletesOnly: true };
    case 'change':
      return { key: wait.key };
    case 'turn':
      return { key: wait.watch, prefix: true, deletesOnly: true, previous: true };
  }
}

/** Whether a new wait target is served by the watch of `current` (same key, or the same prefix). */
function sameWatch(next: WaitTarget, current: WaitTarget): boolean {
  if (next.on !== current.on) return false;
  if (next.on === 'turn') return next.watch.equals((current as typeof next).watch);
  return next.key.equals((current as typeof next).key);
}

/** How one event is judged: an outcome ends the round; undefined waits on. */
type Handler = (event: WatchEvent) => RoundOutcome | undefined;

function handlerFor(ctx: RoundContext, wait: WaitTarget): Handler {
  // A deep waiter re-reads on any change of its predecessor.
  if (wait.on !== 'turn') return () => 'recheck';
  return turnHandler(ctx, wait);
}

const inRange = (key: Buffer, range: KeyRange): boolean =>
  key.compare(range.key) >= 0 && (range.rangeEnd === undefined ? key.equals(range.key) : key.compare(range.rangeEnd) < 0);

/**
 * The 'turn' wait (docs/handoff.md): our read saw every key older than ours
 * (`wait.older`). Each deletion of one of them is applied to that set and the
 * policy asked again: when it says we hold, we hold, with no read. Our own
 * key's deletion loses our place. Deletions of newer keys (waiters behind us
 * giving up) and of keys that do not block us (other readers) are ignored. A
 * deletion etcd cannot describe (no previous key-value), or of an older key
 * our read did not show, ends in a re-check.
 */
function turnHandler(ctx: RoundContext, wait: Extract<WaitTarget, { on: 'turn' }>): Handler {
  let remaining: readonly OlderKey[] = wait.older;
  return ({ kv, previous }) => {
    if (kv.key.equals(ctx.myKey)) return 'gone';
    if (!inRange(kv.key, wait.blocking)) return undefined;
    if (!previous) return 'recheck';
    const created = BigInt(previous.create_revision);
    if (created >= wait.maxCreateRevision) return undefined;
    const left = remaining.filter((older) => !(older.createRevision === created && older.key.equals(kv.key)));
    // An older key our read did not show: it was deleted before our read, so this cannot be.
    if (left.length === remaining.length) return 'recheck';
    remaining = left;
    const standing = ctx.policy.standing(remaining, false, wait.maxCreateRevision);
    if (standing.holds) return { heldAt: BigInt(kv.mod_revision) };
    return standing.wait.on === 'turn' ? undefined : 'recheck';
  };
}
