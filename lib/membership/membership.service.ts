import { Inject, Injectable, type BeforeApplicationShutdown, type OnModuleDestroy, type OnModuleInit } from '@nestjs/common';
import { BehaviorSubject, distinctUntilChanged, type Observable } from 'rxjs';
import { RESOLVED_COORDINATION_OPTIONS } from '../coordination.constants.js';
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { EtcdWatches } from '../etcd/watch.js';
import { internalName, namePrefix } from '../etcd/keys.js';
import { SessionService } from '../session/session.service.js';
import type { EtcdSession } from '../session/etcd-session.js';
import { serializeMemberValue } from './member-value.js';
import { backoffDelay, sleep } from '../util/abort.js';
import { EtcdAuthenticationError, EtcdPermissionError } from '../errors/coordination.errors.js';
import { ShardMessages } from '../coordination.messages.js';
import { INSTRUMENTATION } from '../observability/instrumentation.token.js';
import type { Instrumentation } from '../observability/instrumentation.js';
import { MemberList, type MemberInfo, type MemberRecord } from './member-list.js';

export type { MemberInfo };

/**
 * Live membership: every application registers itself at bootstrap (unless
 * the `membership: false` option opts out; it then joins when it opens a
 * shard group or calls {@link join}) under
 * `<namespace>_coordination:members/<lease hex>` on its session lease (JSON
 * `{ identity, value, joinedAt }`), and again on every new session: one put
 * per session. A member disappears when its lease ends (shutdown deletes the
 * record, then revokes the lease; a crash lets it expire after the TTL).
 * {@link members$} follows the list with one prefix watch per application,
 * opened on first use only.
 */
@Injectable()
export class MembershipService implements OnModuleInit, OnModuleDestroy, BeforeApplicationShutdown {
  private readonly prefix: Buffer;
  private readonly list: MemberList;
  private value: unknown;
  private readonly joinedAt = new Date();
  private registered?: EtcdSession;
  private loop?: Promise<void>;
  private wake?: () => void;
  private readonly stopped = new AbortController();
  private leaving?: Promise<void>;
  private joined?: Promise<void>;
  private readonly selfSubject = new BehaviorSubject<string | undefined>(undefined);
  /** Called when etcd refuses a registration for good (auth, permission): bootstrap stops waiting. */
  private refused?: () => void;

  constructor(
    private readonly sessions: SessionService,
    private readonly ops: EtcdOps,
    watches: EtcdWatches,
    @Inject(RESOLVED_COORDINATION_OPTIONS) private readonly options: ResolvedCoordinationOptions,
    @Inject(INSTRUMENTATION) private readonly instrumentation: Instrumentation,
  ) {
    this.prefix = namePrefix(options.namespace, internalName('members'));
    this.value = options.memberValue ?? null;
    this.list = new MemberList(ops, watches, this.prefix, AbortSignal.any([sessions.shutdownSignal, this.stopped.signal]));
  }

  /** The live members, oldest first: one etcd read. */
  async members(): Promise<MemberInfo[]> {
    return (await this.list.read()).members;
  }

  /** The live members, oldest first: replays the current list, then every change. Completes on shutdown. */
  get members$(): Observable<MemberInfo[]> {
    return this.list.list$;
  }

  /** This application's member id (its session lease in hex) while registered on a live session. */
  get selfId(): string | undefined {
    const session = this.registered;
    return session && session.alive ? session.leaseHex : undefined;
  }

  /** {@link selfId} now and on every change (registered on a new session, or session ended). */
  get selfId$(): Observable<string | undefined> {
    return this.selfSubject.pipe(distinctUntilChanged());
  }

  /** This application's value (the `memberValue` option, or the last `setValue`). */
  get currentValue(): unknown {
    return this.value;
  }

  /**
   * Replaces this application's JSON value in its member record (at most 64 KiB
   * of JSON). Resolves once etcd has it, or at once when no session is live
   * (the next registration writes it).
   */
  async setValue(value: unknown): Promise<void> {
    serializeMemberValue(value);
    this.value = value;
    const session = this.registered;
    if (session?.alive) await this.put(session);
  }

  private async put(session: EtcdSession): Promise<void> {
    const record: MemberRecord = { identity: this.options.identity, value: this.value ?? null, joinedAt: this.joinedAt.toISOString() };
    const key = Buffer.concat([this.prefix, Buffer.from(session.leaseHex)]);
    await this.ops.txn(
      { success: [{ request_put: { key, value: Buffer.from(JSON.stringify(record)), lease: session.leaseId.toString() } }] },
      'register this member',
    );
  }

  /** Registers on the current session, then again on each new one, until shutdown. */
  private async registerLoop(first: (err?: unknown) => void): Promise<void> {
    const stop = AbortSignal.any([this.sessions.shutdownSignal, this.stopped.signal]);
    for (let failures = 0; !stop.aborted; ) {
      let session: EtcdSession;
      try {
        // `stop`, not only shutdown: leave() (at onModuleDestroy, before the session service shuts
        // down) must not wait here for a session while etcd is unreachable.
        session = await this.sessions.session(stop);
        await this.put(session);
        this.registered = session;
        this.selfSubject.next(session.alive ? session.leaseHex : undefined);
        failures = 0;
        first();
      } catch (err) {
        if (stop.aborted) break;
        const delay = backoffDelay(failures++, 250, 10_000);
        // A role that may not write the member key: retrying will not fix it, bootstrap goes on.
        const refused = err instanceof EtcdPermissionError || err instanceof EtcdAuthenticationError;
        const message = ShardMessages.log.registerFailed(err instanceof Error ? err.message : String(err), delay, refused);
        // The same failure again and again (a role that may never write it) is said once, then at debug.
        if (failures === 1) this.instrumentation.logger.warn(message);
        else this.instrumentation.logger.debug(message);
        if (refused) this.refused?.();
        await sleep(delay, stop).catch(() => undefined);
        continue;
      }
      await new Promise<void>((resolve) => {
        const done = () => {
          session.signal.removeEventListener('abort', done);
          stop.removeEventListener('abort', done);
          resolve();
        };
        session.signal.addEventListener('abort', done, { once: true });
        stop.addEventListener('abort', done, { once: true });
        this.wake = done;
        // leave() may have run while the put was in flight: its wake-up is already spent.
        if (session.signal.aborted || stop.aborted) done();
      });
      this.selfSubject.next(undefined);
    }
    first();
    this.selfSubject.complete();
  }

  /**
   * Registers this application in the member list (idempotent) and resolves
   * once it is listed. Done at bootstrap unless `membership: false`, and by
   * `ShardService.group()`; call it after opting out to join later.
   */
  join(): Promise<void> {
    if (this.stopped.signal.aborted || this.sessions.shutdownSignal.aborted) return Promise.resolve();
    this.joined ??= new Promise<void>((resolve) => {
      let settled = false;
      this.loop = this.registerLoop(() => {
        if (!settled) resolve();
        settled = true;
      });
    });
    return this.joined;
  }

  /**
   * With the `membership` option (the default), waits for the first
   * registration, so that `members()` includes this application once it is
   * up; as the default election does, for at most `connectTimeout` (an outage
   * right after the session was made), and not at all once etcd refused the
   * put for good (a role without write access to the namespace; logged).
   * Registration carries on in the background either way.
   */
  async onModuleInit(): Promise<void> {
    if (!this.options.membership) return;
    let timer: NodeJS.Timeout | undefined;
    await new Promise<void>((resolve) => {
      timer = setTimeout(resolve, this.options.connectTimeout);
      this.refused = resolve;
      void this.join().then(resolve);
    });
    clearTimeout(timer);
    this.refused = undefined;
  }

  /**
   * Withdraws from the member list now (shutdown does it first, so the other
   * members rebalance at once): stops re-registering and deletes our record.
   * The record would go with the session lease anyway.
   */
  leave(): Promise<void> {
    this.leaving ??= (async () => {
      this.stopped.abort();
      this.wake?.();
      await this.loop;
      const session = this.registered;
      this.registered = undefined;
      if (session && !session.endReason) {
        const key = Buffer.concat([this.prefix, Buffer.from(session.leaseHex)]);
        await this.ops.txn({ success: [{ request_delete_range: { key } }] }, 'withdraw this member');
      }
    })();
    return this.leaving;
  }

  /**
   * Shutdown, step 1: withdraws now, without holding up the other destroy
   * hooks (a resigning leader's delete is not queued behind ours, so a
   * graceful failover costs no extra round trip). Awaited in step 2.
   */
  onModuleDestroy(): void {
    void this.leave().catch(() => undefined);
  }

  /** Shutdown, step 2: the withdrawal has finished (or failed) before the session is closed. */
  async beforeApplicationShutdown(): Promise<void> {
    await this.leave().catch(() => undefined);
  }
}
