import type { IKeyValue } from 'etcd3';
import { BehaviorSubject, filter, type Observable } from 'rxjs';
import type { EtcdOps } from '../etcd/etcd-ops.js';
import type { EtcdWatches } from '../etcd/watch.js';
import { prefixRangeEnd } from '../etcd/keys.js';
import { backoffDelay, sleep } from '../util/abort.js';

/** One live application of the cluster, as registered on its session lease. */
export interface MemberInfo {
  /** The member's id: its session lease id in hex (the last part of its key). */
  readonly id: string;
  /** The member's `identity` option. */
  readonly identity: string;
  /** The JSON value it set (`memberValue` option or `MembershipService.setValue`); `null` when none. */
  readonly value: unknown;
  /** When it registered (its own clock). */
  readonly joinedAt: Date;
  /** Its session lease id. */
  readonly leaseId: bigint;
  /** Its etcd key, `<namespace>_coordination:members/<lease hex>`. */
  readonly key: string;
  /** Create revision of its key: members are listed in this order (oldest first). */
  readonly revision: bigint;
}

/** The JSON stored in a member key. */
export interface MemberRecord {
  identity: string;
  value: unknown;
  joinedAt: string;
}

/** Parses one member key; `undefined` for a key that is not a member record (ignored). */
export function parseMember(kv: IKeyValue, prefix: Buffer): MemberInfo | undefined {
  try {
    const record = JSON.parse(kv.value.toString('utf8')) as MemberRecord;
    if (typeof record?.identity !== 'string') return undefined;
    return {
      id: kv.key.subarray(prefix.length).toString('utf8'),
      identity: record.identity,
      value: record.value ?? null,
      joinedAt: new Date(record.joinedAt),
      leaseId: BigInt(kv.lease),
      key: kv.key.toString('utf8'),
      revision: BigInt(kv.create_revision),
    };
  } catch {
    return undefined;
  }
}

/** Oldest first; ties (impossible in etcd) by id. */
export function sortMembers(members: Iterable<MemberInfo>): MemberInfo[] {
  return [...members].sort((a, b) => (a.revision < b.revision ? -1 : a.revision > b.revision ? 1 : a.id.localeCompare(b.id)));
}

/**
 * The live member list, followed by ONE prefix watch for the whole
 * application (started on first use): one read, then the watch from that
 * revision; PUTs add or update a member, DELETEs (lease expired or revoked)
 * remove it; a failed watch re-reads. Replays the current list, emits only
 * changes, completes on `stop`.
 */
export class MemberList {
  private readonly subject = new BehaviorSubject<MemberInfo[] | undefined>(undefined);
  private started = false;
  private readonly rangeEnd: Buffer;

  constructor(
    private readonly ops: EtcdOps,
    private readonly watches: EtcdWatches,
    private readonly prefix: Buffer,
    private readonly stop: AbortSignal,
  ) {
    this.rangeEnd = prefixRangeEnd(prefix);
  }

  get list$(): Observable<MemberInfo[]> {
    this.start();
    return this.subject.pipe(filter((list): list is MemberInfo[] => list !== undefined));
  }

  /** The latest list seen by the watch, if it has started and read once. */
  get latest(): MemberInfo[] | undefined {
    return this.subject.value;
  }

  /** One read of the live members. */
  async read(): Promise<{ members: MemberInfo[]; revision: bigint }> {
    const res = await this.ops.txn(
      { success: [{ request_range: { key: this.prefix, range_end: this.rangeEnd } }] },
      'read the member list',
    );
    const members: MemberInfo[] = [];
    for (const kv of res.responses[0]!.response_range.kvs) {
      const member = parseMember(kv, this.prefix);
      if (member) members.push(member);
    }
    return { members: sortMembers(members), revision: BigInt(res.header.revision) };
  }

  private start(): void {
    if (this.started) return;
    this.started = true;
    void this.loop().finally(() => this.subject.complete());
  }

  private publish(byKey: Map<string, MemberInfo>): void {
    const list = sortMembers(byKey.values());
    const previous = this.subject.value;
    if (previous && previous.length === list.length && previous.every((m, i) => sameMember(m, list[i]!))) return;
    this.subject.next(list);
  }

  private async loop(): Promise<void> {
    for (let failures = 0; !this.stop.aborted; ) {
      let revision: bigint;
      const byKey = new Map<string, MemberInfo>();
      try {
        const read = await this.read();
        for (const member of read.members) byKey.set(member.key, member);
        revision = read.revision;
        failures = 0;
      } catch {
        await sleep(backoffDelay(failures++, 200, 5_000), this.stop).catch(() => undefined);
        continue;
      }
      this.publish(byKey);
      const end = await this.watches.follow({ key: this.prefix, prefix: true, fromRevision: revision + 1n }, this.stop, ({ type, kv }) => {
        const key = kv.key.toString('utf8');
        if (type === 'delete') byKey.delete(key);
        else {
          const member = parseMember(kv, this.prefix);
          if (member) byKey.set(key, member);
        }
        this.publish(byKey);
      });
      if (end === 'failed') await sleep(200, this.stop).catch(() => undefined);
    }
  }
}

function sameMember(a: MemberInfo, b: MemberInfo): boolean {
  return a.key === b.key && a.revision === b.revision && JSON.stringify(a.value) === JSON.stringify(b.value) && a.identity === b.identity;
}
