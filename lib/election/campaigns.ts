import { namePrefix, prefixRangeEnd } from '../etcd/keys.js';
import { LockAbortedError, LockTimeoutError, NotLeaderError, ShutdownError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import { operationSignal, raceSignal } from '../util/abort.js';
import { withoutStack } from '../queue/hold.js';
import { KEY_SHAPES } from '../queue/name-registry.js';
import type { QueueEngine } from '../queue/queue.engine.js';
import { validateAcquireOptions, type AcquireOptions, type QueueSpec } from '../queue/queue-spec.js';
import { predecessorPolicy } from '../queue/turn-policy.js';
import { heldInContext } from '../context/coordination.context.js';
import { Leadership, ReentrantLeadership, type LeadershipContext } from './leadership.js';

/** One campaign in flight, shared by every caller of one election in this application. */
interface Campaign {
  readonly controller: AbortController;
  readonly promise: Promise<Leadership>;
  /** Callers waiting without a signal or timeout: they keep the campaign going. */
  unbounded: number;
  /** Callers waiting with a signal or timeout. */
  bounded: number;
}

/**
 * The campaigns of one application. A campaign is an acquire of the
 * election's queue (Go's election layout: candidate key
 * `<namespace><election>/<lease hex>` holding the proposal, the predecessor
 * rule). Concurrent campaigns for one election share one candidate key; a
 * caller's abort or timeout ends only that caller's wait, and the shared
 * campaign is withdrawn only when nobody waits for it any more.
 */
export class Campaigns {
  get logger() { return this.engine.instrumentation.logger; }
  private readonly running = new Map<string, Campaign>();
  private readonly leaders = new Map<string, Leadership>();

  constructor(
    private readonly engine: QueueEngine,
    private readonly namespace: string,
  ) {}

  /** The queue spec of election `name` with proposal `value`. */
  spec(name: string, value: string): QueueSpec<Leadership> {
    const prefix = namePrefix(this.namespace, name);
    return {
      kind: 'election',
      registryKind: 'election',
      mode: 'leader',
      name,
      prefix,
      keyShape: KEY_SHAPES.session,
      contextKey: `election:${name}`,
      // One key per session and election; concurrent campaigns share it (see campaign()).
      localQueue: false,
      key: (session) => Buffer.concat([prefix, Buffer.from(session.leaseHex)]),
      value: Buffer.from(value),
      policy: predecessorPolicy({ key: prefix, rangeEnd: prefixRangeEnd(prefix) }),
      createHold: (init) => new Leadership(init, value),
      releasedReason: () => withoutStack(() => new NotLeaderError(name, Messages.resigned(name))),
    };
  }

  /** Our leadership of `name`, while it is held. */
  leadership(name: string): Leadership | undefined {
    const leadership = this.leaders.get(name);
    return leadership?.isLeader() ? leadership : undefined;
  }

  /** Whether a campaign for `name` is waiting in the queue. */
  isCampaigning(name: string): boolean {
    return this.running.has(name);
  }

  /** The async-context key of leadership of `name` (re-entry inside `run()`). */
  contextKey(name: string): string {
    return this.engine.scoped(`election:${name}`);
  }

  /** Resolves when we lead `name`; see {@link AcquireOptions} for abort and timeout. */
  async campaign(name: string, value: string, options: AcquireOptions = {}): Promise<LeadershipContext> {
    const timeout = validateAcquireOptions(options, 'campaign');
    if (options.signal?.aborted) throw new LockAbortedError(name, Messages.campaignAborted(name), { cause: options.signal.reason });
    const outer = heldInContext(this.contextKey(name));
    if (outer) return new ReentrantLeadership(outer as LeadershipContext);
    const current = this.leadership(name);
    if (current) return current;
    const campaign = this.running.get(name) ?? this.start(name, value);
    if (timeout === undefined && !options.signal) {
      campaign.unbounded++;
      try {
        return await campaign.promise;
      } finally {
        campaign.unbounded--;
      }
    }
    campaign.bounded++;
    const op = operationSignal({ timeoutMs: timeout, caller: options.signal });
    try {
      return await raceSignal(campaign.promise, op.signal);
    } catch (err) {
      if (!op.signal.aborted) throw err;
      campaign.bounded--;
      // The last caller gave up: withdraw the candidate key, and report only once it is gone.
      if (campaign.bounded === 0 && campaign.unbounded === 0) {
        campaign.controller.abort(new LockAbortedError(name, Messages.campaignAborted(name)));
        // Won just before the withdrawal, with nobody left to use it: resign at once.
        const won = await campaign.promise.catch(() => undefined);
        await won?.release();
      }
      if (op.cause() === 'timeout') throw new LockTimeoutError(name, timeout!, Messages.waitTimeout('election', name, timeout!));
      throw new LockAbortedError(name, Messages.campaignAborted(name), { cause: options.signal?.reason });
    } finally {
      if (!op.signal.aborted) campaign.bounded--;
      op.dispose();
    }
  }

  /** Leadership if we lead, or win at once (nobody else leads or waits); else `null`, leaving no key. */
  async tryCampaign(name: string, value: string): Promise<LeadershipContext | null> {
    const outer = heldInContext(this.contextKey(name));
    if (outer) return new ReentrantLeadership(outer as LeadershipContext);
    const current = this.leadership(name);
    if (current) return current;
    if (this.running.has(name)) return null; // we wait in the queue: somebody else leads
    const won = (await this.engine.tryAcquire(this.spec(name, value))) as Leadership | null;
    return won && this.install(won);
  }

  private start(name: string, value: string): Campaign {
    const controller = new AbortController();
    const promise = (this.engine.acquire(this.spec(name, value), { signal: controller.signal }) as Promise<Leadership>)
      .then((leadership) => this.install(leadership))
      .finally(() => {
        if (this.running.get(name) === campaign) this.running.delete(name);
      });
    // A campaign every caller gave up on rejects with nobody listening.
    promise.catch(() => undefined);
    const campaign: Campaign = { controller, promise, unbounded: 0, bounded: 0 };
    this.running.set(name, campaign);
    return campaign;
  }

  private install(leadership: Leadership): Leadership {
    const name = leadership.election;
    this.leaders.set(name, leadership);
    this.logger.log(Messages.log.becameLeader(name, leadership.fencingToken));
    leadership.signal.addEventListener('abort', () => {
      if (this.leaders.get(name) === leadership) this.leaders.delete(name);
      const reason = leadership.signal.reason;
      if (!(reason instanceof ShutdownError) && !(reason instanceof NotLeaderError)) {
        this.logger.warn(Messages.log.lostLeadership(name, reason instanceof Error ? reason.message : String(reason)));
      }
    }, { once: true });
    return leadership;
  }

  /** Withdraws a waiting campaign for `name` (its callers get LockAbortedError). */
  withdraw(name: string): void {
    this.running.get(name)?.controller.abort(new LockAbortedError(name, Messages.campaignAborted(name)));
  }

  /** Withdraws a waiting campaign and resigns leadership of `name` (stop acting first, then delete the key). */
  async resign(name: string): Promise<void> {
    this.withdraw(name);
    await this.running.get(name)?.promise.catch(() => undefined);
    await this.leaders.get(name)?.release();
  }

  /** Shutdown: withdraw every campaign and resign every leadership (one round trip hands each over). */
  /** Resigns every leadership now (shutdown; idempotent): resolves when the deletions are done. */
  async resignAll(): Promise<void> {
    const reason = new ShutdownError(Messages.shuttingDown());
    await Promise.allSettled([...this.leaders.values()].map((leadership) => leadership.revoke(reason)));
  }

  async shutdown(): Promise<void> {
    const reason = new ShutdownError(Messages.shuttingDown());
    for (const campaign of this.running.values()) campaign.controller.abort(reason);
    await Promise.allSettled([...this.running.values()].map((campaign) => campaign.promise));
    await Promise.allSettled([...this.leaders.values()].map((leadership) => leadership.revoke(reason)));
  }
}
