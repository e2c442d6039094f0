import { prefixRangeEnd } from '../etcd/keys.js';
import { FakeStore } from './fake-store.js';

/** A member of a {@link FakeCluster}: one testing application (internal). */
export interface FakeMember {
  /** Lease id of the member's live session, if any. */
  ownLease(): bigint | undefined;
  /** Steps back in `election` so that another member can lead (resign; the default election rejoins). */
  stepBack(election: string): Promise<void>;
}

/**
 * One in-memory "etcd" shared by several testing applications of one
 * process, to test hand-over and failover between instances without etcd:
 * pass the same cluster to each `CoordinationTestingModule.forRoot({ cluster })`.
 * Without it, every application gets its own. One revision counter per
 * cluster: fencing tokens strictly grow across all its applications.
 */
export class FakeCluster {
  /** @internal The key-value store. */
  readonly store = new FakeStore();
  /** @internal The applications using it. */
  readonly members = new Set<FakeMember>();

  /** The current revision (the last fencing token handed out, or a later one). */
  get revision(): bigint {
    return this.store.revision;
  }

  /** Every key under `prefix` (a namespace, or a namespace plus `name/`), oldest first: for assertions. */
  keys(prefix = ''): string[] {
    // UTF-8 never contains 0xff: [ '', ff ) is every key.
    const key = Buffer.from(prefix);
    const range = prefix === '' ? { key, rangeEnd: Buffer.from([0xff]) } : { key, rangeEnd: prefixRangeEnd(key) };
    return this.store.range(range).map((kv) => kv.key.toString('utf8'));
  }
}
