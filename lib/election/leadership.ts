import type { EtcdSession } from '../session/etcd-session.js';

/** Leadership of one election, as seen by the code that runs under it. */
export interface LeadershipContext {
  /** The election's name. */
  readonly election: string;
  /** Create revision of our candidate key: strictly increasing from one leader to the next. */
  readonly fencingToken: bigint;
  /** Our candidate key. */
  readonly key: string;
  /** Aborts when leadership ends (resigned, session lost at its deadline, shutdown). */
  readonly signal: AbortSignal;
  /** Synchronous check against the session deadline: false once leadership may be gone. */
  isLeader(): boolean;
}

/** A leader as stored in etcd. */
export interface LeaderInfo {
  /** The leader's proclaimed value (its identity unless proclaimed otherwise). */
  value: string;
  /** The leader's candidate key, `<namespace><election>/<lease hex>`. */
  key: string;
  /** Create revision of the leader's key: its fencing token. */
  revision: bigint;
  /** The leader's session lease id. */
  leaseId: bigint;
}

/** State of this instance in the default election, as emitted by `leader$`. */
export interface LeaderState {
  /** True while this instance is the leader (false at the latest at its session deadline). */
  isLeader: boolean;
  /** The current leader (this instance or another), or null when there is none. */
  leader: LeaderInfo | null;
}

/** Leadership won by `ElectionService.campaign` (internal implementation of the public context). */
export class Leadership implements LeadershipContext {
  private readonly controller = new AbortController();
  private currentValue: string;

  constructor(
    readonly election: string,
    readonly key: string,
    readonly keyBytes: Buffer,
    readonly fencingToken: bigint,
    value: string,
    readonly session: EtcdSession,
  ) {
    this.currentValue = value;
    if (session.signal.aborted) this.controller.abort(session.signal.reason);
    else session.signal.addEventListener('abort', this.onSessionEnd, { once: true });
  }

  private readonly onSessionEnd = () => this.controller.abort(this.session.signal.reason);

  get signal(): AbortSignal {
    return this.controller.signal;
  }

  get value(): string {
    return this.currentValue;
  }

  /** @internal */
  setValue(value: string): void {
    this.currentValue = value;
  }

  isLeader(): boolean {
    return this.session.alive && !this.controller.signal.aborted;
  }

  /** Ends this leadership locally with `reason` (resign, shutdown). */
  end(reason: unknown): void {
    this.session.signal.removeEventListener('abort', this.onSessionEnd);
    if (!this.controller.signal.aborted) this.controller.abort(reason);
  }

  info(): LeaderInfo {
    return { value: this.currentValue, key: this.key, revision: this.fencingToken, leaseId: this.session.leaseId };
  }
}
