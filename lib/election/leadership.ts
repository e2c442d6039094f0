import { Hold, ReentrantHold, type CoordinationHold, type HoldInit } from '../queue/hold.js';
import type { KeyHolder } from '../queue/lockable.js';

/**
 * Leadership of one election, as seen by the code that runs under it: a
 * {@link CoordinationHold} (fencing token, signal, `isHeld()`,
 * `throwIfLost()`, `release()` = resign, `await using`) plus the election.
 */
export interface LeadershipContext extends CoordinationHold {
  /** The election's name (same as `name`). */
  readonly election: string;
  /** Create revision of our candidate key: strictly increasing from one leader to the next. */
  readonly fencingToken: bigint;
  /** Our candidate key. */
  readonly key: string;
  /** Aborts when leadership ends (resigned, session lost at its deadline, shutdown). */
  readonly signal: AbortSignal;
  /** Synchronous check against the session deadline: false once leadership may be gone (same as `isHeld()`). */
  isLeader(): boolean;
}

/** A leader as stored in etcd: the oldest candidate key (the same fields as a lock's holder). */
export type LeaderInfo = KeyHolder;

/** State of this instance in the default election, as emitted by `leader$`. */
export interface LeaderState {
  /** True while this instance is the leader (false at the latest at its session deadline). */
  isLeader: boolean;
  /** The current leader (this instance when `isLeader`, else another one), or null when there is none known. */
  leader: LeaderInfo | null;
}

/** Leadership won by a campaign: the hold of the election's queue (internal implementation). */
export class Leadership extends Hold implements LeadershipContext {
  private currentValue: string;

  constructor(init: HoldInit, value: string) {
    super(init);
    this.currentValue = value;
  }

  get election(): string {
    return this.name;
  }

  /** The proclaimed value. */
  get value(): string {
    return this.currentValue;
  }

  /** After a successful proclaim (internal). */
  setValue(value: string): void {
    this.currentValue = value;
  }

  isLeader(): boolean {
    return this.isHeld();
  }

  info(): LeaderInfo {
    const value = this.currentValue;
    return { identity: value, value, key: this.key, fencingToken: this.fencingToken, revision: this.revision, leaseId: this.session.leaseId };
  }
}

/** Whether two leader descriptions are the same leader with the same value. */
export function sameLeader(a: LeaderInfo | null, b: LeaderInfo | null): boolean {
  if (a === null || b === null) return a === b;
  return a.key === b.key && a.revision === b.revision && a.value === b.value;
}

/** Leadership re-entered inside `run()` of the same election: shares the outer one, and its release is a no-op. */
export class ReentrantLeadership extends ReentrantHold<LeadershipContext> implements LeadershipContext {
  get election(): string {
    return this.outer.election;
  }

  isLeader(): boolean {
    return this.outer.isLeader();
  }
}
