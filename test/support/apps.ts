// Small fixture apps for the library tests: a Nest application context with
// CoordinationModule pointed at a throwaway etcd, closed after each test.
import 'reflect-metadata';
import { Module, type INestApplicationContext, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Etcd3 } from 'etcd3';
import { CoordinationModule, type CoordinationModuleOptions } from '../../lib/index.js';

export interface AppOptions extends CoordinationModuleOptions {
  /** Extra modules to import next to CoordinationModule. */
  imports?: any[];
  providers?: any[];
  /** Show Nest's logs (default: errors only). */
  verbose?: boolean;
}

const open = new Set<INestApplicationContext>();

/** Creates (and tracks) an application context with CoordinationModule.forRoot(options). */
export async function createApp(options: AppOptions): Promise<INestApplicationContext> {
  const { imports = [], providers = [], verbose, ...coordination } = options;
  class TestAppModule {}
  Module({ imports: [CoordinationModule.forRoot({ election: false, ...coordination }), ...imports], providers })(TestAppModule);
  const app = await NestFactory.createApplicationContext(TestAppModule as Type, {
    logger: verbose || process.env.TEST_VERBOSE === '1' ? ['error', 'warn', 'log', 'debug'] : ['error'],
    abortOnError: false,
  });
  open.add(app);
  const close = app.close.bind(app);
  app.close = async () => {
    open.delete(app);
    await close();
  };
  return app;
}

/** Closes every app this file created and has not closed yet (call in afterEach). */
export async function closeApps(): Promise<void> {
  await Promise.allSettled([...open].map((app) => app.close()));
}

/** A plain etcd3 client for inspecting etcd from the outside, closed by the caller. */
export function rawClient(endpoint: string | string[]): Etcd3 {
  return new Etcd3({ hosts: endpoint });
}

/** Every key (as a string) under `prefix`. */
export async function keysUnder(client: Etcd3, prefix: string): Promise<string[]> {
  return client.getAll().prefix(prefix).keys();
}

/** Lease ids etcd currently has. */
export async function leaseIds(client: Etcd3): Promise<string[]> {
  const res = await client.leaseClient.leaseLeases();
  return res.leases.map((l) => l.ID);
}

export const delay = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Polls `predicate` until it is true or `timeoutMs` passes (then throws `message`). */
export async function eventually(predicate: () => boolean | Promise<boolean>, timeoutMs: number, message: string): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await predicate()) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeoutMs} ms: ${message}`);
    await delay(10);
  }
}

let namespaceCounter = 0;
/** A namespace unique within this test process, so tests sharing one etcd never see each other's keys. */
export function uniqueNamespace(label: string): string {
  return `t${process.pid}-${++namespaceCounter}-${label}/`;
}

/** Where the member records of a namespace live: `<namespace>_coordination:members/<lease hex>`. */
export function membersPrefix(namespace: string): string {
  return `${namespace}_coordination:members/`;
}

/**
 * Every key under `namespace` except the member records (one per running application: membership
 * is on by default). For "no lock key left" checks while the applications still run; once they
 * have closed use {@link keysUnder}: nothing at all may remain, member records included.
 */
export async function keysExceptMembers(client: Etcd3, namespace: string): Promise<string[]> {
  const members = membersPrefix(namespace);
  return (await keysUnder(client, namespace)).filter((key) => !key.startsWith(members));
}
