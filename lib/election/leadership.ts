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
  /** Synchronous check against the session deadline. */
  isLeader(): boolean;
}
