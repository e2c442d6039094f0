import { hostname } from 'node:os';
import type { Etcd3 } from 'etcd3';
import type { ConfigurableModuleAsyncOptions } from '@nestjs/common';
import {
  DEFAULT_CONNECT_TIMEOUT_MS,
  DEFAULT_ELECTION,
  DEFAULT_HOST,
  DEFAULT_REQUEST_TIMEOUT_MS,
  DEFAULT_SESSION_TTL_SECONDS,
  NAMESPACE_SEPARATORS,
} from './coordination.constants.js';

import { InvalidOptionsError } from './errors/coordination.errors.js';
import { Messages, ModuleMessages, type UnsafeCharacterKind } from './coordination.messages.js';
import { findUnsafeCharacter, validateName } from './etcd/keys.js';
import { MAX_FENCING_EPOCH } from './etcd/etcd-ops.js';
import type { LoggerService } from '@nestjs/common';
import type { CoordinationLogLevel } from './observability/logger.js';
import type { MeterProviderLike } from './observability/metrics.js';
import { validateObservabilityOptions } from './observability/observability.options.js';
import { serializeMemberValue } from './membership/member-value.js';
import { validateShutdownTimeout } from './shutdown/shutdown-options.js';


/** Options of {@link CoordinationModule.forRoot}. Every field is optional. */
export interface CoordinationModuleOptions {
  /**
   * etcd endpoints, `host:port` or `http(s)://host:port`. Default: the
   * comma-separated env `ETCD_HOSTS`, else `127.0.0.1:2379`. Not allowed with `client`.
   * Not trimmed: white space or a control character anywhere (`'a:1, b:2'`,
   * a trailing newline) is refused; credentials go in `auth`, not in a host.
   */
  hosts?: string | string[];
  /** etcd user name and password (etcd "simple" auth). Never logged. */
  auth?: { username: string; password: string };
  /** TLS: CA certificate, and client certificate chain + private key for mutual TLS. Never logged. */
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
  /**
   * An existing etcd3 client to use instead of creating one. The module never
   * closes a client it did not create.
   */
  client?: Etcd3;
  /**
   * Prefix of every key this module writes, e.g. `'myapp/'`. Default `''`.
   * A non-empty namespace must end with one of `/ : . - _`, so that two
   * namespaces never share keys (lock `1job` in `app` would otherwise be
   * lock `job` in `app1`). Well-formed text without control or format characters.
   */
  namespace?: string;
  /** TTL of the session lease in seconds (integer, 2..3600). Default 10. */
  sessionTtl?: number;
  /**
   * This instance's name, stored as the value of its lock and candidate keys. Default `<hostname>:<pid>`.
   * Well-formed text without control or format characters, at most 256 characters.
   */
  identity?: string;
  /** How long bootstrap waits for etcd before failing, in ms. Default 5000. */
  connectTimeout?: number;
  /** Deadline of each etcd request, in ms. Default 5000. */
  requestTimeout?: number;
  /**
   * Name of the default election, campaigned at bootstrap and used by
   * `@LeaderOnly()` and `leader$`. `false` turns the default election off. Default `'leader'`.
   */
  election?: string | false;
  /**
   * Added to every fencing token, in its high bits (token = epoch × 2^48 +
   * create revision), 0 to 32767. Default 0: tokens are etcd's revisions, as
   * in Go. Raise it (the same value on every instance) after etcd's data was
   * wiped or restored from an older snapshot, so tokens keep growing for the
   * resources you fence (see docs/faults.md).
   */
  fencingEpoch?: number;
  /** Make the module global (default true). */
  isGlobal?: boolean;
  /**
   * Where the library logs: a Nest `LoggerService` (e.g. your app's logger).
   * Default: Nest's `Logger` with the context `Coordination`. Every line
   * starts with `[identity=... namespace="..."]`.
   */
  logger?: LoggerService;
  /**
   * The least severe level logged: `'error' | 'warn' | 'log' | 'debug' | 'verbose'`,
   * or `false` for nothing. Default `'verbose'` (everything; the logger's own levels still apply).
   */
  logLevel?: CoordinationLogLevel | false;
  /**
   * OpenTelemetry metrics (see README "Metrics and events"). Default: the
   * global MeterProvider of `@opentelemetry/api`, if installed. `false`: none.
   * `meterProvider`: use this provider instead of the global one.
   * `names: false`: leave the lock/election name out of the attributes (for
   * apps with many distinct, e.g. per-id, lock names).
   */
  metrics?: false | { meterProvider?: MeterProviderLike; names?: boolean };
  /**
   * A JSON value published in this application's member record (see
   * `MembershipService`), e.g. `{ zone: 'eu-1', version: '1.4.2' }`. At most
   * 64 KiB of JSON. Default `null`; change it at runtime with `setValue()`.
   */
  memberValue?: unknown;
  /**
   * Register this application in the member list (`MembershipService`) at
   * bootstrap and on every new session: one put per session, on its lease.
   * Default `true`. `false` opts out (0.1's exact key footprint: no
   * `<namespace>_coordination:members/` key); the application still joins
   * when it opens a shard group or calls `join()`.
   */
  membership?: boolean;
  /**
   * Graceful drain on shutdown, in ms (integer, 0 to 86400000; default
   * 10000). When the application closes (`app.close()`, or a signal with
   * `enableShutdownHooks()`), new guarded calls are refused with
   * `ShutdownError` (scheduled ticks are skipped), and running guarded runs
   * (`withLock`/`run`, `@WithLock`, `@LeaderOnly`) get up to this long to
   * finish while keeping their locks and leadership; only then do their
   * signals abort, locks are released, leaderships resigned and the session
   * revoked. `0` aborts at once (the 0.1 behaviour). `Infinity` is refused:
   * keep it below your orchestrator's kill deadline (Kubernetes:
   * `terminationGracePeriodSeconds`, default 30 s).
   */
  shutdownTimeout?: number;
}

/**
 * Factory-based configuration for {@link CoordinationModule.forRootAsync}
 * (`useClass`/`useExisting`). `isGlobal` returned here is ignored: give it to
 * `forRootAsync` itself, the module definition is fixed before the factory runs.
 */
export interface CoordinationOptionsFactory {
  createCoordinationOptions(): CoordinationModuleOptions | Promise<CoordinationModuleOptions>;
}

/**
 * Options of {@link CoordinationModule.forRootAsync}: exactly one of
 * useFactory, useClass, useExisting, with `inject`/`imports` (and Nest's
 * `provideInjectionTokensFrom`).
 */
export interface CoordinationModuleAsyncOptions
  extends ConfigurableModuleAsyncOptions<CoordinationModuleOptions, 'createCoordinationOptions'> {
  /** Make the module global (default true). */
  isGlobal?: boolean;
}

/** Options after validation and defaults (internal). */
export interface ResolvedCoordinationOptions {
  hosts: string[];
  auth?: { username: string; password: string };
  credentials?: { rootCertificate: Buffer; privateKey?: Buffer; certChain?: Buffer };
  client?: Etcd3;
  namespace: string;
  sessionTtl: number;
  identity: string;
  connectTimeout: number;
  requestTimeout: number;
  election: string | false;
  fencingEpoch: number;
  logger?: LoggerService;
  logLevel: CoordinationLogLevel | false;
  metrics: false | { meterProvider?: MeterProviderLike; names?: boolean };
  memberValue: unknown;
  membership: boolean;
  shutdownTimeout: number;
}

const KNOWN_OPTIONS = new Set([
  'hosts', 'auth', 'credentials', 'client', 'namespace', 'sessionTtl', 'identity',
  'connectTimeout', 'requestTimeout', 'election', 'fencingEpoch', 'isGlobal', 'shutdownTimeout',
  'logger', 'logLevel', 'metrics', 'memberValue', 'membership',
]);

function fail(option: string, problem: string): never {
  throw new InvalidOptionsError(option, Messages.invalidOption(option, problem));
}

/** Refuses lone surrogates, C0/DEL/C1 controls, format characters and line separators. */
function checkCharacters(option: string, value: string): void {
  const unsafe = findUnsafeCharacter(value);
  if (unsafe) fail(option, ModuleMessages.unsafeCharacter(unsafe.kind, unsafe.codePoint, unsafe.index));
}

// Anything a host name cannot contain and that trimming would have hidden.
const HOST_UNSAFE = /[\s\p{Cs}\p{Cc}\p{Cf}]/u;

/**
 * Validates one endpoint. Not trimmed: `'127.0.0.1:2379\n'` (a value read
 * from a file, say) is refused where it is given, not half-accepted.
 * `wrap` lets ETCD_HOSTS say where the value came from.
 */
function validateHost(host: unknown, option: string, wrap: (problem: string) => string = (p) => p): string {
  const reject = (problem: string): never => fail(option, wrap(problem));
  if (typeof host !== 'string' || host === '') reject(Messages.problem.hostEmpty());
  const value = host as string;
  const withoutScheme = value.replace(/^https?:\/\//, '');
  // Checked before anything that echoes the value: "user:secret@host" must not be logged.
  if (withoutScheme.includes('@')) reject(ModuleMessages.hostHasCredentials());
  const unsafe = HOST_UNSAFE.exec(value);
  if (unsafe) {
    const codePoint = unsafe[0].codePointAt(0)!;
    const kind: UnsafeCharacterKind = findUnsafeCharacter(unsafe[0])?.kind ?? 'white space';
    reject(ModuleMessages.hostUnsafeCharacter(value, kind, codePoint, unsafe.index));
  }
  if (/\//.test(withoutScheme.replace(/\/$/, ''))) {
    reject(Messages.problem.hostForm(value));
  }
  const match = /^(\[[^\]]+\]|[^:]+):(\d+)\/?$/.exec(withoutScheme);
  if (!match) return reject(Messages.problem.hostNoPort(value));
  const port = Number(match[2]);
  if (!Number.isInteger(port) || port < 1 || port > 65535) reject(Messages.problem.portRange(match![2]!));
  return value;
}

function integerIn(option: string, value: unknown, min: number, max: number, fallback: number): number {
  if (value === undefined) return fallback;
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    fail(option, Messages.problem.integerRange(min, max, value));
  }
  return value;
}

function isEtcdClient(value: unknown): value is Etcd3 {
  return typeof value === 'object' && value !== null &&
    typeof (value as Etcd3).kv === 'object' && typeof (value as Etcd3).leaseClient === 'object' &&
    typeof (value as Etcd3).watch === 'function';
}

/**
 * Validates options and applies defaults. Throws {@link InvalidOptionsError}
 * naming the first wrong option; never echoes secrets.
 */
export function resolveCoordinationOptions(
  input: CoordinationModuleOptions | undefined,
  env: NodeJS.ProcessEnv = process.env,
): ResolvedCoordinationOptions {
  if (input === undefined || input === null) input = {};
  if (typeof input !== 'object' || Array.isArray(input)) fail('options', ModuleMessages.optionsNotObject());
  for (const key of Object.keys(input)) {
    if (!KNOWN_OPTIONS.has(key)) fail(key, Messages.problem.unknownOption([...KNOWN_OPTIONS]));
  }

  let hosts: string[] = [];
  if (input.client !== undefined) {
    if (!isEtcdClient(input.client)) fail('client', Messages.problem.notEtcdClient());
    for (const conflicting of ['hosts', 'auth', 'credentials'] as const) {
      if (input[conflicting] !== undefined) fail(conflicting, Messages.problem.conflictsWithClient());
    }
    hosts = ['(user-provided client)'];
  } else if (input.hosts !== undefined) {
    const list = Array.isArray(input.hosts) ? input.hosts : typeof input.hosts === 'string' ? input.hosts.split(',') : fail('hosts', Messages.problem.hostsType());
    if (list.length === 0) fail('hosts', Messages.problem.hostsEmpty());
    hosts = list.map((host, index) => validateHost(host, `hosts[${index}]`));
  } else {
    // Unset or empty means "not configured"; anything else is validated as written (not trimmed).
    const fromEnv = env.ETCD_HOSTS;
    hosts = fromEnv
      ? fromEnv.split(',').map((host, index) => validateHost(host, `ETCD_HOSTS[${index}]`, ModuleMessages.environmentVariable))
      : [DEFAULT_HOST];
  }

  if (input.auth !== undefined) {
    const auth = input.auth as { username?: unknown; password?: unknown };
    if (typeof auth !== 'object' || auth === null) fail('auth', Messages.problem.authShape());
    if (typeof auth.username !== 'string' || auth.username === '') fail('auth.username', Messages.problem.nonEmptyString());
    // Never include the password value in the message.
    if (typeof auth.password !== 'string' || auth.password === '') fail('auth.password', Messages.problem.nonEmptyString());
  }
  if (input.credentials !== undefined) {
    const c = input.credentials as { rootCertificate?: unknown; privateKey?: unknown; certChain?: unknown };
    if (typeof c !== 'object' || c === null) fail('credentials', Messages.problem.credentialsShape());
    if (!Buffer.isBuffer(c.rootCertificate)) fail('credentials.rootCertificate', Messages.problem.rootCertificate());
    if (c.privateKey !== undefined && !Buffer.isBuffer(c.privateKey)) fail('credentials.privateKey', Messages.problem.pemBuffer());
    if (c.certChain !== undefined && !Buffer.isBuffer(c.certChain)) fail('credentials.certChain', Messages.problem.pemBuffer());
    if ((c.privateKey === undefined) !== (c.certChain === undefined)) {
      fail('credentials', Messages.problem.mtlsPair());
    }
  }

  const namespace = input.namespace ?? '';
  if (typeof namespace !== 'string') fail('namespace', Messages.problem.notString());
  checkCharacters('namespace', namespace);
  if (namespace.length > 200) fail('namespace', Messages.problem.maxLength(200));
  if (namespace !== '' && !NAMESPACE_SEPARATORS.includes(namespace.at(-1)!)) fail('namespace', ModuleMessages.namespaceSeparator(namespace));

  const identity = input.identity ?? `${hostname()}:${process.pid}`;
  if (typeof identity !== 'string' || identity === '') fail('identity', Messages.problem.nonEmptyString());
  checkCharacters('identity', identity);
  if (identity.length > 256) fail('identity', Messages.problem.identityLength(256));

  let election: string | false = DEFAULT_ELECTION;
  if (input.election !== undefined) {
    if (input.election === false) election = false;
    else if (typeof input.election === 'string') {
      validateName('election', input.election, (problem) => fail('election', problem));
      election = input.election;
    } else fail('election', Messages.problem.electionType());
  }
  if (input.isGlobal !== undefined && typeof input.isGlobal !== 'boolean') fail('isGlobal', ModuleMessages.isGlobalNotBoolean(input.isGlobal));

  return {
    hosts,
    auth: input.auth,
    credentials: input.credentials,
    client: input.client,
    namespace,
    sessionTtl: integerIn('sessionTtl', input.sessionTtl, 2, 3600, DEFAULT_SESSION_TTL_SECONDS),
    identity,
    connectTimeout: integerIn('connectTimeout', input.connectTimeout, 100, 600_000, DEFAULT_CONNECT_TIMEOUT_MS),
    requestTimeout: integerIn('requestTimeout', input.requestTimeout, 100, 600_000, DEFAULT_REQUEST_TIMEOUT_MS),
    election,
    fencingEpoch: integerIn('fencingEpoch', input.fencingEpoch, 0, MAX_FENCING_EPOCH, 0),
    ...validateObservabilityOptions(input, fail),
    memberValue: checkMemberValue(input.memberValue),
    membership: checkMembership(input.membership),
    shutdownTimeout: validateShutdownTimeout(input.shutdownTimeout, fail),
  };
}

/** The `memberValue` option: JSON-serialisable, at most 64 KiB (see MembershipService). */
function checkMemberValue(value: unknown): unknown {
  if (value === undefined) return null;
  try {
    serializeMemberValue(value);
  } catch (err) {
    fail('memberValue', (err as Error).message);
  }
  return value;
}

/** The `membership` option: on unless `false` (see MembershipService). */
function checkMembership(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'boolean') fail('membership', ModuleMessages.isGlobalNotBoolean(value));
  return value;
}
