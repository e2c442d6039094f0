import { BehaviorSubject, type Observable, type Subscription } from 'rxjs';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import { leaseHex, namePrefix } from '../etcd/keys.js';
import type { QueueEngine } from '../queue/queue.engine.js';
import type { Hold } from '../queue/hold.js';
import { oldestHolder } from '../queue/lockable.js';
import type { MembershipService } from '../membership/membership.service.js';
import type { MemberInfo } from '../membership/member-list.js';
import { InvalidUsageError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages, ShardMessages } from '../coordination.messages.js';
import { backoffDelay } from '../util/abort.js';
import { ruleIds, shardsAssignedTo } from './assignment.js';
import { shardOfKey } from './shard-hash.js';
import { shardQueueName, shardSpec } from './shard-spec.js';
import { runWithShard, type ShardContext } from './shard-context.js';
import type { ShardGroupStats, ShardOwner } from './shard.types.js';
import { Slots } from './slots.js';

/** Acquires (claims, and waits for shards still held elsewhere) in flight per group, and key deletions. */
const MAX_ACQUIRES = 64;
const MAX_CONCURRENT_RELEASES = 64;

export type { ShardGroupStats, ShardOwner };

interface OwnedShard {
  readonly hold: Hold;
  readonly context: ShardContext;
  running: number;
  releasing: boolean;
  drained?: () => void;
}

/** What a group needs from its application (internal). */
export interface ShardGroupDeps {
  engine: QueueEngine;
  ops: EtcdOps;
  membership: MembershipService;
  namespace: string;
  identity: string;
  shutdown: AbortSignal;
}

/**
 * N shards of one name, spread over the live members by the assignment rule
 * (see assignment.ts). This member queues only for the shards the rule gives
 * it (each shard is a mutex of the queue engine on our session lease), hands
 * on the shards the rule moves away once their running work finished, and
 * owns a shard only while it holds that shard's key.
 */
export class ShardGroup {
  private readonly owned = new Map<number, OwnedShard>();
  private readonly pending = new Map<number, AbortController>();
  /** Acquires in flight (close waits for them, so no key of ours is left behind). */
  private readonly inFlight = new Set<Promise<void>>();
  private readonly releases = new Slots(MAX_CONCURRENT_RELEASES);
  private desired = new Set<number>();
  private members: readonly MemberInfo[] = [];
  private readonly ownedSubject = new BehaviorSubject<ReadonlySet<number>>(new Set());
  private readonly subscriptions: Subscription[] = [];
  private reconcileTimer?: NodeJS.Timeout;
  private retryTimer?: NodeJS.Timeout;
  private failures = 0;
  private closing?: Promise<void>;
  /** Counters for benchmarks and dashboards. */
  readonly stats: ShardGroupStats = { acquired: 0, released: 0, lost: 0 };

  constructor(
    /** The group's name. */
    readonly name: string,
    /** How many shards the group has. */
    readonly shards: number,
    private readonly deps: ShardGroupDeps,
  ) {
    this.subscriptions.push(
      deps.membership.members$.subscribe((list) => {
        this.members = list;
        this.scheduleReconcile();
      }),
      deps.membership.selfId$.subscribe(() => this.scheduleReconcile()),
    );
  }

  /** The shards this application owns: replays the current set, then every change. Completes when the group closes. */
  get owned$(): Observable<ReadonlySet<number>> {
    return this.ownedSubject.asObservable();
  }

  /** The shards this application owns right now (held, and not being handed on). */
  ownedShards(): ReadonlySet<number> {
    const now = new Set<number>();
    for (const [shard, entry] of this.owned) if (!entry.releasing && entry.hold.isHeld()) now.add(shard);
    return now;
  }

  /** The shards the rule assigns to this application for the current member list (owned or not yet). */
  assignedShards(): ReadonlySet<number> {
    return new Set(this.desired);
  }

  /** The shard of an application key: `fnv1a64(`${group}:${key}`) mod shards` (see README). */
  shardOf(key: string): number {
    if (typeof key !== 'string') throw new InvalidUsageError(ShardMessages.keyNotString(this.name, key));
    return shardOfKey(this.name, key, this.shards);
  }

  /** Whether this application owns the shard of `key` right now (local, synchronous, checked against the session deadline). */
  isOwner(key: string): boolean {
    return this.ownsShard(this.shardOf(key));
  }

  /** Whether this application owns `shard` right now. */
  ownsShard(shard: number): boolean {
    const entry = this.owned.get(this.checkShard(shard));
    return entry !== undefined && !entry.releasing && entry.hold.isHeld();
  }

  /** Who owns the shard of `key`, as etcd says now (one read), or `null` while nobody does. */
  ownerOf(key: string): Promise<ShardOwner | null> {
    return this.ownerOfShard(this.shardOf(key));
  }

  /** Who owns `shard`, as etcd says now (one read), or `null` while nobody does. */
  async ownerOfShard(shard: number): Promise<ShardOwner | null> {
    this.checkShard(shard);
    const prefix = namePrefix(this.deps.namespace, shardQueueName(this.name, shard));
    const holder = await oldestHolder(this.deps.ops, prefix, `read owner of shard ${shard} of "${this.name}"`);
    if (!holder) return null;
    const { identity, leaseId, fencingToken, key } = holder;
    return { group: this.name, shard, identity, memberId: leaseHex(leaseId), leaseId, fencingToken, key };
  }

  /**
   * Runs `fn` in the shard's context if this application owns `shard` now;
   * resolves `undefined` without running it otherwise. The shard is not
   * handed on before `fn` settles (graceful drain).
   */
  async runInShard<T>(shard: number, fn: (context: ShardContext) => Promise<T> | T): Promise<T | undefined> {
    if (typeof fn !== 'function') throw new InvalidUsageError(Messages.runNeedsFunction('shard'));
    return this.enter(shard, fn);
  }

  /**
   * Runs `fn` synchronously in the shard's context if owned (internal, for
   * sync decorated methods); a returned promise keeps the shard from being
   * handed on until it settles.
   */
  enter<T>(shard: number, fn: (context: ShardContext) => T): T | undefined {
    const entry = this.owned.get(this.checkShard(shard));
    if (!entry || entry.releasing || !entry.hold.isHeld()) return undefined;
    entry.running++;
    const done = () => {
      if (--entry.running === 0) entry.drained?.();
    };
    let result: T;
    try {
      result = runWithShard(entry.context, () => fn(entry.context));
    } catch (err) {
      done();
      throw err;
    }
    if (result instanceof Promise) return result.finally(done) as T;
    done();
    return result;
  }

  /** {@link runInShard} for the shard of an application key. */
  runIfOwner<T>(key: string, fn: (context: ShardContext) => Promise<T> | T): Promise<T | undefined> {
    return this.runInShard(this.shardOf(key), fn);
  }

  /** Runs `fn` once per shard owned now, concurrently; each run in its shard's context. Resolves with the settled results. */
  async forEachOwnedShard<T>(fn: (context: ShardContext) => Promise<T> | T): Promise<PromiseSettledResult<T | undefined>[]> {
    return Promise.allSettled([...this.ownedShards()].map((shard) => this.runInShard(shard, fn)));
  }

  private checkShard(shard: number): number {
    if (!Number.isInteger(shard) || shard < 0 || shard >= this.shards) throw new InvalidUsageError(ShardMessages.invalidShard(this.name, shard, this.shards));
    return shard;
  }

  private scheduleReconcile(delayMs = 10): void {
    if (this.closing || this.reconcileTimer) return;
    // Coalesces bursts of member events (a start of many members) into one pass.
    this.reconcileTimer = setTimeout(() => {
      this.reconcileTimer = undefined;
      this.reconcile();
    }, delayMs);
    this.reconcileTimer.unref();
  }

  private reconcile(): void {
    if (this.closing || this.deps.shutdown.aborted) return;
    const self = this.deps.membership.selfId;
    const ids = ruleIds(this.members);
    const me = self === undefined ? undefined : ids.get(self);
    this.desired = me !== undefined ? shardsAssignedTo(this.name, this.shards, [...ids.values()], me) : new Set();
    for (const [shard, controller] of this.pending) if (!this.desired.has(shard)) controller.abort();
    for (const [shard, entry] of this.owned) if (!this.desired.has(shard) && !entry.releasing) void this.handOn(shard, entry);
    for (const shard of this.desired) {
      if (this.pending.size >= MAX_ACQUIRES) break; // the rest when one of these settles
      if (!this.owned.has(shard) && !this.pending.has(shard)) this.take(shard);
    }
  }

  private take(shard: number): void {
    const controller = new AbortController();
    this.pending.set(shard, controller);
    const spec = shardSpec(this.deps.namespace, this.deps.identity, this.name, shard);
    const acquiring = this.deps.engine.acquire(spec, { signal: controller.signal });
    // Whichever way it ends, a slot is free again: take the next shard we are missing.
    void acquiring.then(() => this.scheduleReconcile(0), () => this.scheduleReconcile(0));
    const done = acquiring.then(
      (hold) => {
        if (this.pending.get(shard) === controller) this.pending.delete(shard);
        const h = hold as Hold;
        if (this.closing || controller.signal.aborted || !this.desired.has(shard)) return h.release();
        this.failures = 0;
        this.stats.acquired++;
        const entry: OwnedShard = {
          hold: h,
          context: { group: this.name, shard, fencingToken: h.fencingToken, signal: h.signal, hold: h },
          running: 0,
          releasing: false,
        };
        this.owned.set(shard, entry);
        h.signal.addEventListener('abort', () => this.onHoldEnd(shard, entry), { once: true });
        this.publish();
      },
      () => {
        if (this.pending.get(shard) === controller) this.pending.delete(shard);
        if (controller.signal.aborted || this.closing) return;
        // etcd unreachable for longer than connectTimeout, or a shutdown race: try again later.
        clearTimeout(this.retryTimer);
        this.retryTimer = setTimeout(() => this.scheduleReconcile(0), backoffDelay(this.failures++, 200, 5_000));
        this.retryTimer.unref();
      },
    );
    this.inFlight.add(done);
    void done.finally(() => this.inFlight.delete(done));
  }

  /** The hold ended (released by us, session lost, key deleted, shutdown). */
  private onHoldEnd(shard: number, entry: OwnedShard): void {
    if (!entry.releasing) this.stats.lost++;
    if (this.owned.get(shard) === entry && !entry.releasing) {
      this.owned.delete(shard);
      this.publish();
      this.scheduleReconcile();
    }
  }

  /** Stops new work on the shard, waits for its running work, then deletes our key. */
  private async handOn(shard: number, entry: OwnedShard): Promise<void> {
    entry.releasing = true;
    this.publish();
    if (entry.running > 0) await new Promise<void>((resolve) => (entry.drained = resolve));
    try {
      await this.releases.run(() => entry.hold.release());
      this.stats.released++;
    } catch {
      // The key goes with the lease at the latest; the hold's signal has aborted either way.
    } finally {
      if (this.owned.get(shard) === entry) this.owned.delete(shard);
      this.scheduleReconcile();
    }
  }

  private publish(): void {
    const now = this.ownedShards();
    const previous = this.ownedSubject.value;
    if (previous.size === now.size && [...now].every((s) => previous.has(s))) return;
    this.ownedSubject.next(now);
  }

  /**
   * Leaves the group gracefully: stops taking shards, withdraws waits, lets
   * running work finish, then releases every shard (the next owners take them
   * within about one round trip). Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= (async () => {
      clearTimeout(this.reconcileTimer);
      clearTimeout(this.retryTimer);
      for (const subscription of this.subscriptions) subscription.unsubscribe();
      for (const controller of this.pending.values()) controller.abort(new ShutdownError(ShardMessages.groupClosed(this.name)));
      await Promise.allSettled([...this.inFlight]);
      await Promise.allSettled([...this.owned].map(([shard, entry]) => (entry.releasing ? undefined : this.handOn(shard, entry))));
      // Hand-ons started before close (rebalancing) finish on their own; wait for them too.
      while (this.owned.size > 0) await new Promise((resolve) => setTimeout(resolve, 10));
      this.publish();
      this.ownedSubject.complete();
    })();
    return this.closing;
  }
}
