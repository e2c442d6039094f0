// The CLI's etcd connection: the library's own client holder, request helper (deadlines, typed
// errors) and watch owner, closed when the command ends.
import type { ResolvedCoordinationOptions } from '../coordination.options.js';
import { createEtcdClientHolder, type EtcdClientHolder } from '../etcd/etcd-client.js';
import { EtcdOps } from '../etcd/etcd-ops.js';
import { EtcdWatches } from '../etcd/watch.js';

/** What the CLI talks to while a command runs. */
export interface Connection {
  readonly options: ResolvedCoordinationOptions;
  readonly holder: EtcdClientHolder;
  readonly ops: EtcdOps;
  readonly watches: EtcdWatches;
}

/** Runs `fn` with a connection, and closes every watch and the client afterwards, whatever happens. */
export async function withConnection<T>(options: ResolvedCoordinationOptions, fn: (connection: Connection) => Promise<T>): Promise<T> {
  const holder = createEtcdClientHolder(options);
  const watches = new EtcdWatches(holder);
  const ops = new EtcdOps(holder, options.requestTimeout, undefined, options.fencingEpoch);
  try {
    return await fn({ options, holder, ops, watches });
  } finally {
    await watches.close(1_000);
    holder.close();
  }
}
