// The contract of every kind of hold (test/contract-cases.ts) against real etcd.
// Every app is a separate Nest application with its own session.
import type { Etcd3 } from 'etcd3';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { closeApps, createApp, keysUnder, rawClient } from './support/apps.js';
import { defineContract } from './contract-cases.js';

const etcd = etcdFixture();
let client: Etcd3;

const apps = (ns: string, n: number, extra: Record<string, unknown> = {}) =>
  Promise.all(Array.from({ length: n }, (_, i) => createApp({ hosts: etcd().endpoint, namespace: ns, identity: `app-${i}`, sessionTtl: 2, ...extra })));

defineContract({
  label: 'real etcd',
  before() {
    client = rawClient(etcd().endpoint);
  },
  async after() {
    await closeApps();
    client.close();
  },
  apps: (ns, n) => apps(ns, n),
  keys: (ns) => keysUnder(client, ns),
  async revision() {
    const res = await client.kv.range({ key: Buffer.from('\u0000revision-probe') });
    return BigInt(res.header.revision);
  },
  // Session loss through a proxy that stops passing traffic: the lease expires.
  async sessionLoss(ns) {
    const proxy = await startProxy(etcd().endpoint);
    let cut, other;
    try {
      [cut] = await apps(ns, 1, { hosts: proxy.endpoint, requestTimeout: 1_000 });
      [other] = await apps(ns, 1);
    } catch (err) {
      await proxy.close();
      throw err;
    }
    return {
      cut: cut!,
      other: other!,
      lose: async () => proxy.setMode({ kind: 'blackhole' }),
      restore: async () => {
        proxy.setMode({ kind: 'reset' });
        await new Promise((resolve) => setTimeout(resolve, 100));
        proxy.setMode({ kind: 'pass' });
      },
      dispose: () => proxy.close(),
    };
  },
});
