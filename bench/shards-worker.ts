// Bench section 7's member host: many application instances (one Nest app each, its own
// etcd client and session) in one process, each a member of the shard group "bench".
//   argv: <endpoint> <namespace> <first index> <count> <shards> <ttl>
// Emits {type:'ready'} once every app is up; {type:'open'} opens the group in every app -> {type:'opened'}; {type:'close', index} closes one app gracefully
// -> {type:'closed', index}; {type:'close-all'} -> {type:'all-closed'}.
import 'reflect-metadata';
import type { INestApplicationContext } from '@nestjs/common';
import { emit, onMessage } from '../test/harness/child.js';
import { ShardService } from '../lib/index.js';
import { createBenchApp } from './common.js';

const [endpoint, namespace, firstArg, countArg, shardsArg, ttlArg] = process.argv.slice(2);
const first = Number(firstArg);
const count = Number(countArg);
const shards = Number(shardsArg);
const apps = new Map<number, INestApplicationContext>();

for (let i = first; i < first + count; i++) {
  const app = await createBenchApp({ hosts: endpoint!, namespace, identity: `member-${i}`, sessionTtl: Number(ttlArg), election: false, membership: true, connectTimeout: 60_000, requestTimeout: 10_000 });
  apps.set(i, app);
}
emit({ type: 'ready' });

onMessage(async (message) => {
  if (message.type === 'open') {
    // Every member opens the group at about the same moment (a cluster starting together).
    for (const app of apps.values()) app.get(ShardService).group('bench', { shards });
    emit({ type: 'opened' });
  } else if (message.type === 'close') {
    const index = Number(message.index);
    await apps.get(index)?.close();
    apps.delete(index);
    emit({ type: 'closed', index });
  } else if (message.type === 'close-all') {
    await Promise.all([...apps.values()].map((app) => app.close()));
    apps.clear();
    emit({ type: 'all-closed' });
    process.stdin.destroy();
  }
});
