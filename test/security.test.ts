// Security: TLS with client certificates and etcd authentication with a role limited to
// the app's namespace, against real etcd (certificates generated with openssl). Wrong
// credentials or certificates must fail bootstrap with a typed error within a bounded
// time, and no password or private key may ever appear in a log line, an error message,
// a stack, a cause, or anything printed to stdout/stderr.
import 'reflect-metadata';
import { after, afterEach, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { inspect } from 'node:util';
import { Module, type INestApplicationContext, type LoggerService, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { createTestCertificates, startEtcd, type EtcdServer, type EtcdTlsFiles } from './harness/etcd.js';
import {
  CoordinationError,
  CoordinationModule,
  ElectionService,
  EtcdAuthenticationError,
  EtcdPermissionError,
  EtcdUnavailableError,
  InvalidOptionsError,
  LockService,
  type CoordinationModuleOptions,
} from '../lib/index.js';
import { eventually } from './support/apps.js';
import { issueClientCertificate, secretFragments } from './support/faults-certs.js';

const CONNECT_TIMEOUT_MS = 3_000;
/** Bootstrap must fail within connectTimeout plus this much (generous: CI machines are slow). */
const FAIL_SLACK_MS = 5_000;

// ------------------------------------------------------------------ capture

/** Everything the library, Nest and the process printed or threw during this file. */
const captured: string[] = [];

class CapturingLogger implements LoggerService {
  private push(level: string, message: unknown, rest: unknown[]): void {
    captured.push(`${level} ${[message, ...rest].map((v) => (typeof v === 'string' ? v : inspect(v, { depth: 10 }))).join(' ')}`);
  }
  log(message: unknown, ...rest: unknown[]) { this.push('log', message, rest); }
  error(message: unknown, ...rest: unknown[]) { this.push('error', message, rest); }
  warn(message: unknown, ...rest: unknown[]) { this.push('warn', message, rest); }
  debug(message: unknown, ...rest: unknown[]) { this.push('debug', message, rest); }
  verbose(message: unknown, ...rest: unknown[]) { this.push('verbose', message, rest); }
  fatal(message: unknown, ...rest: unknown[]) { this.push('fatal', message, rest); }
}

/** Every text an error carries: message, stack, own properties and the whole cause chain. */
function errorTexts(err: unknown): string[] {
  const texts: string[] = [inspect(err, { depth: 10 })];
  for (let e: unknown = err, depth = 0; e instanceof Error && depth < 10; e = e.cause, depth++) {
    texts.push(e.message, e.stack ?? '', String(e));
  }
  return texts;
}

/** Asserts none of `secrets` occurs in `texts`; the failure message never shows the secret itself. */
function assertNoSecrets(texts: string[], secrets: Array<{ label: string; values: string[] }>, where: string): void {
  for (const { label, values } of secrets) {
    for (const value of values) {
      const hit = texts.findIndex((t) => t.includes(value));
      assert.equal(hit, -1, `${where}: ${label} (fragment ${value.length} chars) leaked into captured text #${hit}`);
    }
  }
}

const open = new Set<INestApplicationContext>();

/** Boots an app with CoordinationModule.forRoot(options); resolves with the app or the bootstrap error. */
async function boot(options: CoordinationModuleOptions): Promise<{ app?: INestApplicationContext; error?: unknown; elapsedMs: number }> {
  class SecurityTestModule {}
  Module({ imports: [CoordinationModule.forRoot({ election: false, connectTimeout: CONNECT_TIMEOUT_MS, requestTimeout: 2_000, sessionTtl: 3, ...options })] })(SecurityTestModule);
  const started = Date.now();
  try {
    const app = await NestFactory.createApplicationContext(SecurityTestModule as Type, { logger: new CapturingLogger(), abortOnError: false });
    open.add(app);
    return { app, elapsedMs: Date.now() - started };
  } catch (error) {
    captured.push(...errorTexts(error));
    return { error, elapsedMs: Date.now() - started };
  }
}

async function closeApp(app: INestApplicationContext | undefined): Promise<void> {
  if (!app) return;
  open.delete(app);
  await app.close();
}

/** Asserts a failed bootstrap: the expected error class and code, within the bound. */
function assertBootFailed(
  result: { app?: INestApplicationContext; error?: unknown; elapsedMs: number },
  expected: new (...args: any[]) => CoordinationError,
  code: string,
  label: string,
): CoordinationError {
  assert.equal(result.app, undefined, `${label}: bootstrap must fail`);
  const err = result.error;
  assert.ok(err instanceof expected, `${label}: expected ${expected.name}, got ${inspect(err, { depth: 2 })}`);
  assert.equal((err as CoordinationError).code, code, label);
  assert.ok(result.elapsedMs < CONNECT_TIMEOUT_MS + FAIL_SLACK_MS, `${label}: failed after ${result.elapsedMs} ms`);
  return err as CoordinationError;
}

// Anything printed to stdout/stderr while this file runs is captured too (and still printed).
const originalWrites = { out: process.stdout.write.bind(process.stdout), err: process.stderr.write.bind(process.stderr) };
before(() => {
  process.stdout.write = ((chunk: unknown, ...rest: unknown[]) => {
    captured.push(String(chunk));
    return (originalWrites.out as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stdout.write;
  process.stderr.write = ((chunk: unknown, ...rest: unknown[]) => {
    captured.push(String(chunk));
    return (originalWrites.err as (...a: unknown[]) => boolean)(chunk, ...rest);
  }) as typeof process.stderr.write;
});
after(() => {
  process.stdout.write = originalWrites.out;
  process.stderr.write = originalWrites.err;
});
afterEach(async () => {
  await Promise.allSettled([...open].map((app) => closeApp(app)));
});

/** Creates user `app` with `password` and a role that may only read and write keys under `prefix`. */
async function createNamespacedUser(server: EtcdServer, password: string, prefix: string): Promise<void> {
  for (const args of [
    ['user', 'add', 'app', `--new-user-password=${password}`],
    ['role', 'add', 'app-role'],
    ['role', 'grant-permission', 'app-role', '--prefix=true', 'readwrite', prefix],
    ['user', 'grant-role', 'app', 'app-role'],
  ]) {
    const r = await server.etcdctl(args);
    assert.equal(r.code, 0, `etcdctl ${args[0]} ${args[1]} failed: ${r.stderr}`);
  }
}

/** Keys under `prefix`, read with the server's own (root) credentials. */
async function keysAsRoot(server: EtcdServer, prefix: string): Promise<string[]> {
  const r = await server.etcdctl(['get', '--prefix', '--keys-only', prefix]);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean);
}

async function leasesAsRoot(server: EtcdServer): Promise<string[]> {
  const r = await server.etcdctl(['lease', 'list']);
  assert.equal(r.code, 0, r.stderr);
  return r.stdout.split('\n').slice(1).filter(Boolean);
}

/** A lock, an election and a clean shutdown with the given options; asserts nothing is left behind. */
async function exerciseApp(server: EtcdServer, options: CoordinationModuleOptions, label: string): Promise<void> {
  const { app, error } = await boot({ ...options, election: 'leader' });
  assert.ok(app, `${label}: bootstrap failed: ${inspect(error, { depth: 3 })}`);
  const locks = app.get(LockService);
  const elections = app.get(ElectionService);
  const handle = await locks.acquire('job', { timeout: 10_000 });
  assert.ok(handle.isHeld());
  assert.ok(handle.key.startsWith(String(options.namespace)), handle.key);
  await eventually(() => elections.isLeader(), 10_000, `${label}: leads the default election`);
  await handle.release();
  await closeApp(app);
  assert.deepEqual(await keysAsRoot(server, String(options.namespace)), [], `${label}: keys left behind`);
  assert.deepEqual(await leasesAsRoot(server), [], `${label}: leases left behind`);
}

// -------------------------------------------------------------------- tests

describe('security: TLS with client certificates (real etcd)', () => {
  let server: EtcdServer;
  let otherDir: string;
  let other: EtcdTlsFiles;
  before(async () => {
    server = await startEtcd({ tls: { clientCertAuth: true } });
    otherDir = mkdtempSync(path.join(os.tmpdir(), 'security-other-ca-'));
    other = createTestCertificates(otherDir); // a second, unrelated CA
  });
  after(async () => {
    await server?.stop();
    if (otherDir) rmSync(otherDir, { recursive: true, force: true });
  });
  const keySecrets = () => [
    { label: 'client private key', values: secretFragments(server.tls!.clientKey) },
    { label: 'other private key', values: secretFragments(other.clientKey) },
  ];

  it('connects with CA + client certificate (host with or without https://), locks, leads, leaves nothing behind', async () => {
    const tls = server.tls!;
    const credentials = { rootCertificate: tls.ca, certChain: tls.clientCert, privateKey: tls.clientKey };
    await exerciseApp(server, { hosts: [server.clientUrl], namespace: 'tls-app/', credentials }, 'https:// host');
    await exerciseApp(server, { hosts: [server.endpoint], namespace: 'tls-app/', credentials }, 'host:port');
    assertNoSecrets(captured, keySecrets(), 'successful TLS runs');
  });

  it('wrong or missing certificates fail bootstrap with a typed error, in bounded time, without key material', async (t) => {
    const tls = server.tls!;
    type Expected = { type: new (...args: any[]) => CoordinationError; code: string };
    const unavailable: Expected = { type: EtcdUnavailableError, code: 'ETCD_UNAVAILABLE' };
    const invalid: Expected = { type: InvalidOptionsError, code: 'INVALID_OPTIONS' };
    const cases: Array<{ label: string; credentials?: CoordinationModuleOptions['credentials']; expected: Expected }> = [
      { label: 'plaintext to a TLS server', expected: unavailable },
      { label: 'CA only, no client certificate', credentials: { rootCertificate: tls.ca }, expected: unavailable },
      { label: 'server not trusted (other CA)', credentials: { rootCertificate: other.ca, certChain: tls.clientCert, privateKey: tls.clientKey }, expected: unavailable },
      { label: 'client certificate from another CA', credentials: { rootCertificate: tls.ca, certChain: other.clientCert, privateKey: other.clientKey }, expected: unavailable },
      // Detected before connecting, when the TLS context is built.
      { label: 'private key does not match the certificate', credentials: { rootCertificate: tls.ca, certChain: tls.clientCert, privateKey: other.clientKey }, expected: invalid },
      { label: 'private key is not PEM', credentials: { rootCertificate: tls.ca, certChain: tls.clientCert, privateKey: Buffer.from('not a key') }, expected: invalid },
    ];
    for (const c of cases) {
      const before = captured.length;
      const result = await boot({ hosts: [server.endpoint], namespace: 'tls-bad/', ...(c.credentials ? { credentials: c.credentials } : {}) });
      const err = assertBootFailed(result, c.expected.type, c.expected.code, c.label);
      if (c.expected === unavailable) assert.match(err.message, new RegExp(server.endpoint.replace(/\./g, '\\.')), `${c.label}: the message names the host`);
      else assert.match(err.message, /credentials/, `${c.label}: the message names the option`);
      assertNoSecrets([...errorTexts(err), ...captured.slice(before)], keySecrets(), c.label);
      t.diagnostic(`${c.label}: ${err.constructor.name} after ${result.elapsedMs} ms: ${err.message}`);
    }
    assert.deepEqual(await keysAsRoot(server, 'tls-bad/'), []);
  });

  it('invalid credential options are refused without echoing the key', async () => {
    const tls = server.tls!;
    const pemString = tls.clientKey.toString('utf8') as unknown as Buffer;
    const result = await boot({ hosts: [server.endpoint], credentials: { rootCertificate: tls.ca, certChain: tls.clientCert, privateKey: pemString } });
    assert.ok(result.error instanceof InvalidOptionsError, inspect(result.error, { depth: 2 }));
    assert.match((result.error as Error).message, /credentials\.privateKey/);
    assertNoSecrets([...errorTexts(result.error), ...captured], keySecrets(), 'invalid options');
  });
});

describe('security: etcd authentication with a namespace-limited role (real etcd)', () => {
  const rootPassword = `root-${randomBytes(12).toString('base64url')}`;
  const appPassword = `app-${randomBytes(12).toString('base64url')}`;
  const secrets = () => [
    { label: 'app password', values: [appPassword] },
    { label: 'root password', values: [rootPassword] },
  ];
  let server: EtcdServer;
  before(async () => {
    server = await startEtcd({ auth: { rootPassword } });
    await createNamespacedUser(server, appPassword, 'myapp/');
  });
  after(async () => {
    await server?.stop();
  });

  it('the app user works inside its namespace: locks, election, clean shutdown', async () => {
    await exerciseApp(server, { hosts: [server.endpoint], namespace: 'myapp/', auth: { username: 'app', password: appPassword } }, 'auth');
    assertNoSecrets(captured, secrets(), 'successful auth run');
  });

  it('outside its namespace every operation fails with EtcdPermissionError and nothing is written', async () => {
    const logged = captured.length;
    const { app, error, elapsedMs } = await boot({ hosts: [server.endpoint], namespace: 'other/', auth: { username: 'app', password: appPassword } });
    assert.ok(app, `bootstrap (lease grant) needs no key permission: ${inspect(error, { depth: 2 })}`);
    // Membership (on by default) may not write its record here either: logged, and bootstrap does not wait for it.
    assert.ok(elapsedMs < CONNECT_TIMEOUT_MS, `bootstrap took ${elapsedMs} ms`);
    const refused = captured.slice(logged).filter((line) => line.startsWith('warn') && line.includes('member list'));
    assert.ok(refused.length > 0 && /permission/i.test(refused[0]!) && /membership: false/.test(refused[0]!), `the refused registration is logged: ${refused[0] ?? '(nothing)'}`);
    await assert.rejects(app.get(LockService).acquire('job', { timeout: 5_000 }), (err: unknown) => {
      assert.ok(err instanceof EtcdPermissionError, inspect(err, { depth: 2 }));
      assert.equal(err.code, 'ETCD_PERMISSION_DENIED');
      assert.match(err.message, /permission/);
      return true;
    });
    await assert.rejects(app.get(LockService).tryAcquire('job'), EtcdPermissionError);
    await assert.rejects(app.get(ElectionService).campaign('jobs'), EtcdPermissionError);
    await closeApp(app);
    assert.deepEqual(await keysAsRoot(server, 'other/'), []);
    assert.deepEqual(await leasesAsRoot(server), []);
    assertNoSecrets(captured, secrets(), 'permission denied');
  });

  it('a wrong password or an unknown user fails bootstrap with EtcdAuthenticationError, in bounded time, without the password', async (t) => {
    const wrong = `wrong-${randomBytes(9).toString('base64url')}`;
    const cases = [
      { label: 'wrong password', auth: { username: 'app', password: wrong } },
      { label: 'unknown user', auth: { username: 'nobody', password: appPassword } },
    ];
    for (const c of cases) {
      const before = captured.length;
      const result = await boot({ hosts: [server.endpoint], namespace: 'myapp/', auth: c.auth });
      const err = assertBootFailed(result, EtcdAuthenticationError, 'ETCD_AUTH_FAILED', c.label);
      assert.match(err.message, new RegExp(`"${c.auth.username}"`), `${c.label}: the message names the user`);
      assertNoSecrets([...errorTexts(err), ...captured.slice(before)], [...secrets(), { label: 'wrong password', values: [wrong] }], c.label);
      t.diagnostic(`${c.label}: ${err.constructor.name} after ${result.elapsedMs} ms: ${err.message}`);
    }
    // No credentials at all: etcd 3.4 grants and keeps alive leases without checking the
    // caller, so bootstrap (one lease grant) succeeds; the first lock is refused, typed.
    const anonymous = await boot({ hosts: [server.endpoint], namespace: 'myapp/' });
    assert.ok(anonymous.app, inspect(anonymous.error, { depth: 2 }));
    const started = Date.now();
    const refusal = await anonymous.app.get(LockService).acquire('job', { timeout: 5_000 }).then(
      () => assert.fail('an anonymous client must not get a lock on an etcd with auth enabled'),
      (err: unknown) => err,
    );
    assert.ok(refusal instanceof EtcdAuthenticationError, inspect(refusal, { depth: 2 }));
    t.diagnostic(`no credentials: bootstrap succeeds; first lock refused with ${refusal.constructor.name} after ${Date.now() - started} ms: ${refusal.message}`);
    const closing = Date.now();
    await closeApp(anonymous.app);
    assert.ok(Date.now() - closing < 10_000, 'shutdown after a refused lock must not hang');
    assert.deepEqual(await keysAsRoot(server, 'myapp/'), []);
    assertNoSecrets(captured, secrets(), 'all auth runs');
  });
});

describe('security: TLS client certificates and auth together (real etcd)', () => {
  const appPassword = `app-${randomBytes(12).toString('base64url')}`;
  let server: EtcdServer;
  before(async () => {
    server = await startEtcd({ tls: { clientCertAuth: true }, auth: { rootPassword: `root-${randomBytes(12).toString('base64url')}` } });
    await createNamespacedUser(server, appPassword, 'myapp/');
  });
  after(async () => {
    await server?.stop();
  });

  it('a client certificate with CN=app is the app user (no password): its namespace only', async () => {
    const tls = server.tls!;
    const appCert = issueClientCertificate(tls, 'app');
    const credentials = { rootCertificate: tls.ca, certChain: appCert.cert, privateKey: appCert.key };
    await exerciseApp(server, { hosts: [server.endpoint], namespace: 'myapp/', credentials }, 'CN=app');
    const { app } = await boot({ hosts: [server.endpoint], namespace: 'other/', credentials });
    assert.ok(app);
    await assert.rejects(app.get(LockService).acquire('job', { timeout: 5_000 }), EtcdPermissionError);
    await closeApp(app);
    assertNoSecrets(captured, [{ label: 'app private key', values: secretFragments(appCert.key) }, { label: 'app password', values: [appPassword] }], 'CN=app');
  });

  it('password auth over mutual TLS: the token user (app) wins over the certificate (CN=root)', async () => {
    const tls = server.tls!;
    const credentials = { rootCertificate: tls.ca, certChain: tls.clientCert, privateKey: tls.clientKey };
    const auth = { username: 'app', password: appPassword };
    await exerciseApp(server, { hosts: [server.endpoint], namespace: 'myapp/', credentials, auth }, 'TLS + password');
    const { app } = await boot({ hosts: [server.endpoint], namespace: 'other/', credentials, auth });
    assert.ok(app);
    await assert.rejects(app.get(LockService).acquire('job', { timeout: 5_000 }), EtcdPermissionError);
    await closeApp(app);
    assertNoSecrets(captured, [{ label: 'client private key', values: secretFragments(tls.clientKey) }, { label: 'app password', values: [appPassword] }], 'TLS + password');
  });
});
