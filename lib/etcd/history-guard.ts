import type { IResponseHeader } from 'etcd3';
import { EtcdHistoryResetError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/**
 * Notices when etcd's history was lost or rolled back: its data was wiped
 * (revisions start again near 1) or the cluster was restored from an older
 * snapshot (revisions go back). Either makes fencing tokens built from
 * revisions go backwards, so every hold and leadership must be given up and
 * the operator told. Two signs, from the header of every response: the
 * cluster id changed, or the revision is lower than one this process has
 * already seen before the request was sent (our requests are
 * linearizable, so a request sent after we saw revision R answers with R or
 * more while the history is intact; concurrent requests may answer out of
 * order, which is why the floor is taken at send time).
 */
export class HistoryGuard {
  private clusterId?: string;
  private highest = 0n;
  /** Bumped at every reset: requests sent before it are not judged against the new history. */
  private generation = 0;
  private readonly listeners = new Set<(error: EtcdHistoryResetError) => void>();

  /** Calls `listener` on every reset found; returns the unsubscribe function. */
  onReset(listener: (error: EtcdHistoryResetError) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Call before sending a request; pass the result to {@link observe} with its response. */
  begin(): { floor: bigint; generation: number } {
    return { floor: this.highest, generation: this.generation };
  }

  /** Checks one response header; throws (after telling the listeners) when the history was reset. */
  observe(header: Pick<IResponseHeader, 'cluster_id' | 'revision'> | undefined, sent: { floor: bigint; generation: number }, hosts: readonly string[]): void {
    if (!header) return;
    const revision = BigInt(header.revision ?? 0);
    const clusterId = String(header.cluster_id ?? '');
    const previousCluster = this.clusterId;
    if (sent.generation !== this.generation) {
      // Sent before the last reset was noticed: that reset was reported already.
      if (clusterId === previousCluster && revision > this.highest) this.highest = revision;
      return;
    }
    const reset = (previousCluster !== undefined && clusterId !== previousCluster) || revision < sent.floor;
    this.clusterId = clusterId;
    if (!reset) {
      if (revision > this.highest) this.highest = revision;
      return;
    }
    const previousRevision = this.highest;
    this.highest = revision; // adopt the new history: later requests compare against it
    this.generation++;
    const error = new EtcdHistoryResetError(
      hosts,
      Messages.historyReset(hosts, previousCluster ?? '?', clusterId, previousRevision, revision),
      { previousClusterId: previousCluster ?? '', clusterId, previousRevision, revision },
    );
    for (const listener of this.listeners) listener(error);
    throw error;
  }
}
