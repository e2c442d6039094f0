// The contract of every kind of hold (test/contract-cases.ts) against the testing kit's
// in-memory fake: the applications of one case share a FakeCluster (one store, one revision
// counter), as the real ones share one etcd. Session loss is FakeCoordination.expireSession().
import 'reflect-metadata';
import { Module, type INestApplicationContext, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CoordinationTestingModule, FakeCluster, FakeCoordination } from '../lib/testing/index.js';
import { defineContract } from './contract-cases.js';

const clusters = new Map<string, FakeCluster>();
const open = new Set<INestApplicationContext>();

/** The cluster of namespace `ns`: every case uses a namespace of its own, like a store of its own. */
const clusterOf = (ns: string) => clusters.get(ns) ?? clusters.set(ns, new FakeCluster()).get(ns)!;

async function fakeApp(ns: string, identity: string): Promise<INestApplicationContext> {
  class FakeAppModule {}
  Module({ imports: [CoordinationTestingModule.forRoot({ cluster: clusterOf(ns), namespace: ns, identity, election: false })] })(FakeAppModule);
  const app = await NestFactory.createApplicationContext(FakeAppModule as Type, { logger: ['error'], abortOnError: false });
  open.add(app);
  const close = app.close.bind(app);
  app.close = async () => {
    open.delete(app);
    await close();
  };
  return app;
}

const apps = (ns: string, n: number) => Promise.all(Array.from({ length: n }, (_, i) => fakeApp(ns, `app-${i}`)));

defineContract({
  label: 'in-memory fake',
  before() {},
  async after() {
    await Promise.allSettled([...open].map((app) => app.close()));
  },
  apps,
  keys: async (ns) => clusterOf(ns).keys(ns),
  revision: async (ns) => clusterOf(ns).revision,
  async sessionLoss(ns) {
    const [cut, other] = await apps(ns, 2);
    return {
      cut: cut!,
      other: other!,
      lose: () => cut!.get(FakeCoordination).expireSession(),
      restore: async () => undefined,
      dispose: async () => undefined,
    };
  },
});
