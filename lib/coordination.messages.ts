/**
 * Every error and log text of the library, as functions, so that code and tests
 * share one source of truth. Never pass a secret (password, key) to any of these.
 */
export const Messages = {
  invalidOption: (option: string, problem: string) =>
    `CoordinationModule: invalid option "${option}": ${problem}`,
  invalidName: (kind: string, name: unknown, problem: string) =>
    `Invalid ${kind} name ${describeValue(name)}: ${problem}`,
  etcdUnreachable: (hosts: readonly string[], ms: number, cause?: string) =>
    `Could not reach etcd at ${hosts.join(', ')} within ${ms} ms` + (cause ? ` (${cause})` : '') +
    '. Check that etcd is running and that "hosts" (or ETCD_HOSTS) points to it.',
  etcdAuthFailed: (hosts: readonly string[], username: string) =>
    `etcd at ${hosts.join(', ')} rejected the credentials of user "${username}" (authentication failed). Check options.auth.`,
  etcdPermissionDenied: (hosts: readonly string[], what: string) =>
    `etcd at ${hosts.join(', ')} denied permission to ${what}. Check that the role of the configured user covers the namespace.`,
  etcdTlsFailed: (hosts: readonly string[], cause: string) =>
    `TLS handshake with etcd at ${hosts.join(', ')} failed (${cause}). Check options.credentials (CA, client certificate and key).`,
  lockTimeout: (name: string, ms: number) => `Timed out after ${ms} ms waiting for lock "${name}"`,
  lockAborted: (name: string) => `Waiting for lock "${name}" was aborted`,
  lockHeld: (name: string) => `Lock "${name}" is held by another holder`,
  semaphoreFull: (name: string, permits: number) => `Semaphore "${name}" has no free permit (of ${permits})`,
  sessionLost: (leaseHex: string, reason: string) => `etcd session (lease ${leaseHex}) lost: ${reason}`,
  sessionClosed: () => 'The coordination session was closed (application shutdown)',
  shuttingDown: () => 'CoordinationModule is shutting down; no new locks or campaigns are accepted',
  lockReleased: (name: string) => `Lock "${name}" was released`,
  notLeader: (election: string) => `This instance is not the leader of election "${election}"`,
  leadershipLost: (election: string) => `Leadership of election "${election}" was lost`,
  handoverNoCandidate: (election: string) => `Cannot hand over election "${election}": no other candidate is waiting (leadership was kept)`,
  handoverNoSuchCandidate: (election: string, to: string) =>
    `Cannot hand over election "${election}" to ${JSON.stringify(to)}: no waiting candidate has that value (leadership was kept)`,
  handoverForeignCandidate: (election: string, to: string, key: string) =>
    `Cannot hand over election "${election}" to ${JSON.stringify(to)}: candidate ${key}, before it in the queue, is not known to be of this library (no member record on its lease: a Go or etcdctl candidate, which cannot be asked to step aside safely, or an application with membership: false); leadership was kept`,
  handoverRaced: (election: string) => `Cannot hand over election "${election}": the queue changed meanwhile (leadership was kept; try again)`,
  resigned: (election: string) => `Resigned from election "${election}"`,
  electionDisabled: () =>
    'The default election is disabled (option election: false); pass an election name explicitly.',
  campaignAborted: (election: string) => `Campaign for election "${election}" was aborted`,
  moduleMissing: (decorator: string, target: string) =>
    `@${decorator} on ${target} cannot run: CoordinationModule is not initialized in this application. ` +
    'Import CoordinationModule.forRoot(...) (or forRootAsync) in your root module. The method was NOT run.',
  notAProvider: (decorator: string, target: string) =>
    `@${decorator} on ${target} cannot run: this instance is not a provider or controller of an application with ` +
    'CoordinationModule (was it created with `new`, or is its class missing from a module\'s providers?). ' +
    'Let Nest create it (add the class to providers) and get it by injection. The method was NOT run.',
  secondCopyLoaded: (decorator: string, target: string) =>
    `@${decorator} on ${target} cannot run: two copies of nest-etcd-coordination are loaded in this process ` +
    '(e.g. after jest.resetModules(), or its ESM and CommonJS builds side by side), and the class was decorated by ' +
    'a copy whose CoordinationModule is not in this application. Load the library once (jest: do not reset modules ' +
    'between the app and the decorated classes). The method was NOT run.',
  decoratedMethodNotAsync: (decorator: string, target: string, reason = 'it does not return a Promise') =>
    `@${decorator} on ${target}: the method is not async and ${reason}; make it async ` +
    `(\`async ${target.replace(/^.*\./, '').replace(/\(\)$/, '')}(): Promise<...>\`): @${decorator} always returns a Promise, ` +
    'so without a type check (SWC: nest start -b swc) the method would silently become async.',
  notAsyncDeclared: (declared: string) => `its declared return type (design:returntype) is ${declared}, not Promise`,
  notAsyncReturned: (got: string) => `it returned ${got}, not a Promise (it ran under the lock this once; later calls are refused without running)`,
  notAsyncRefusedBefore: () => 'an earlier call returned something that is not a Promise (the method was NOT run)',
  decoratedMethodsNotAsync: (problems: readonly string[]) =>
    problems.length === 1 ? problems[0]! : `${problems.length} decorated methods are not async:\n- ${problems.join('\n- ')}`,
  /** What is wrong with an option or a name (the tail of invalidOption / invalidName). */
  problem: {
    notString: () => 'must be a string',
    empty: () => 'must not be empty',
    tooLong: (max: number, got: number) => `must be at most ${max} characters (got ${got})`,
    maxLength: (max: number) => `must be at most ${max} characters`,
    slash: () => 'must not contain "/" (one name\'s key range would contain another\'s); use ":" or "." as a separator',
    surroundingSpace: () => 'must not start or end with white space',
    reservedPrefix: (prefix: string) => `must not start with "${prefix}" (reserved for the library's own records: jobs, membership, shards)`,
    integerRange: (min: number, max: number, got: unknown) => `must be an integer from ${min} to ${max}, got ${JSON.stringify(got)}`,
    unknownOption: (known: readonly string[]) => `unknown option (known: ${known.join(', ')})`,
    notEtcdClient: () => 'must be an Etcd3 instance from the etcd3 package',
    conflictsWithClient: () => 'cannot be combined with "client" (configure the client instead)',
    hostsType: () => 'must be a string or an array of strings',
    hostsEmpty: () => 'must name at least one etcd endpoint',
    authShape: () => 'must be { username, password }',
    nonEmptyString: () => 'must be a non-empty string',
    credentialsShape: () => 'must be { rootCertificate, privateKey?, certChain? }',
    rootCertificate: () => 'must be a Buffer holding the PEM CA certificate',
    pemBuffer: () => 'must be a Buffer (PEM)',
    mtlsPair: () => 'privateKey and certChain must be given together (mutual TLS)',
    identityLength: (max: number) => `must be at most ${max} characters without control characters`,
    electionType: () => 'must be a name or false',
    hostEmpty: () => 'must be a non-empty string like "127.0.0.1:2379"',
    hostForm: (value: string) => `${JSON.stringify(value)} is not of the form host:port or http(s)://host:port`,
    hostNoPort: (value: string) => `${JSON.stringify(value)} has no port (expected host:port, e.g. 127.0.0.1:2379)`,
    portRange: (port: string) => `port ${port} is out of range 1..65535`,
  },
  // ---- etcd history reset (issue 17)
  historyReset: (hosts: readonly string[], previousCluster: string, cluster: string, previousRevision: bigint, revision: bigint) =>
    `etcd at ${hosts.join(', ')} lost or rolled back its history ` +
    (previousCluster !== cluster ? `(cluster id changed from ${previousCluster} to ${cluster})` : `(revision ${revision} after ${previousRevision} was seen)`) +
    ': its data was wiped or restored from an older snapshot. Every lock and leadership of this application was given up. ' +
    'Fencing tokens start lower now: if you fence with them, raise the fencingEpoch option (see docs/faults.md).',
  // ---- queue engine, watches, elections (issue 11)
  nameInUse: (name: string, kind: string, other: string) =>
    `The name "${name}" is already in use as ${other}; it cannot be used as a ${kind} at the same time ` +
    '(the kinds would share etcd keys). Use a different name for each kind.',
  foreignKey: (key: string) => `another kind elsewhere (etcd holds the key "${key}", which is not of this kind's shape)`,
  ownKeyGone: (key: string) => `our key ${key} is gone (session expired, or deleted by someone else)`,
  claimFoundNoKey: (what: string) => `etcd transaction for ${what} found no key on the failure path`,
  watchCreationRefused: (reason: string) => `watch creation refused: ${reason}`,
  optionsNotObject: (where: string) => `${where} options must be an object`,
  notAnAbortSignal: (where: string) => `${where}: signal must be an AbortSignal`,
  invalidTimeout: (where: string, timeout: unknown, max: number) =>
    `${where}: timeout must be a number of milliseconds from 0 to ${max}, or Infinity for none; got ${describeValue(timeout)}`,
  waitTimeout: (kind: string, name: string, ms: number) => `Timed out after ${ms} ms waiting for ${kind} "${name}"`,
  waitAborted: (kind: string, name: string) => `Waiting for ${kind} "${name}" was aborted`,
  timedOutDuringOutage: (kind: string, name: string, ms: number, cause: string) =>
    `Gave up waiting for ${kind} "${name}" after ${ms} ms: etcd could not be reached meanwhile (${cause})`,
  holdLost: (kind: string, name: string) =>
    `The ${kind} "${name}" is no longer ours in etcd (its key was deleted or replaced): the guarded write was not made`,
  heldKeyDeleted: (kind: string, name: string, key: string) =>
    `The ${kind} "${name}" was lost: its key ${key} was deleted by someone else (an operator's etcdctl del, or a force release)`,
  heldKeyReplaced: (kind: string, name: string, key: string) =>
    `The ${kind} "${name}" was lost: its key ${key} was re-created or moved off our session lease by someone else`,
  heldKeyForceReleased: (kind: string, name: string, by: string) =>
    `The ${kind} "${name}" was force-released by ${JSON.stringify(by)}`,
  noSessionWithin: (ms: number) => `no etcd session could be made within ${ms} ms`,
  selfDeadlock: (kind: string, name: string, conflicting: string) =>
    `Cannot take ${kind} "${name}" while this call chain holds a conflicting lock on it (${conflicting}): it would wait for itself.`,
  runNeedsFunction: (kind: string) => `withLock/run of a ${kind} needs a function to run under the hold`,
  invalidOnLocked: (value: unknown) => `onLocked must be 'wait', 'skip' or 'fail', got ${describeValue(value)}`,
  invalidPermits: (where: string, permits: unknown, max: number) =>
    `${where}: permits must be an integer from 1 to ${max}, got ${String(permits)}`,
  invalidMode: (mode: unknown) => `@WithLock: mode must be 'exclusive', 'read' or 'write', got ${describeValue(mode)}`,
  permitsWithMode: () => '@WithLock: permits cannot be combined with a read/write mode',
  notAMethod: (decorator: string, target: string) => `@${decorator} can only decorate methods (${target})`,
  leaderOnlyWithoutElection: (target: string) =>
    `@LeaderOnly() on ${target}: The default election is disabled (option election: false); pass an election name explicitly. The method was NOT run.`,
  ambiguousApplication: (decorator: string, target: string) =>
    `@${decorator} on ${target}: the class is a non-singleton provider in more than one application of this process, ` +
    'so the application of this call cannot be told. Make the provider a singleton. The method was NOT run.',
  electionTaken: (election: string) => `Election "${election}" has another leader or candidates ahead of us`,
  valueNotString: (where: string) => `${where} value must be a string`,
  valueTooLarge: (where: string, bytes: number, max: number) =>
    `${where} value is ${bytes} bytes; at most ${max} bytes fit in one etcd request`,
  // ---- session and connectivity (h/session): keep this block together for easy merges ----
  etcdNoHostServing: (hosts: readonly string[], what: string) =>
    `No etcd member at ${hosts.join(', ')} could ${what}: every host failed recently (etcd3's circuit breakers are open). ` +
    'Check that etcd is running, has quorum, and that "hosts" (or ETCD_HOSTS) points to it.',
  // ---- end of session and connectivity block ----
  log: {
    sessionStarted: (leaseHex: string, ttl: number) => `etcd session started (lease ${leaseHex}, TTL ${ttl} s)`,
    sessionLost: (leaseHex: string, reason: string) => `etcd session lost (lease ${leaseHex}): ${reason}`,
    sessionClosed: (leaseHex: string) => `etcd session closed (lease ${leaseHex} revoked)`,
    keepAliveFailed: (leaseHex: string, reason: string) => `keepalive for lease ${leaseHex} failed: ${reason}; retrying`,
    // ---- session and connectivity (h/session) ----
    sessionAttemptFailed: (attempt: number, timeoutMs: number, reason: string) =>
      `creating the etcd session: attempt ${attempt} (timeout ${timeoutMs} ms) failed: ${reason}; retrying`,
    // ---- end of session and connectivity block ----
    leaderOnlySkipped: (target: string, election: string) =>
      `${target} skipped: not the leader of "${election}"`,
    withLockSkipped: (target: string, name: string) => `${target} skipped: lock "${name}" is held elsewhere`,
    scheduledSkippedOutage: (target: string, message: string) =>
      `${target} skipped: etcd could not be reached (${message}); the outage itself is logged once when it starts and once when it ends`,
    campaignFailed: (election: string, reason: string, retryMs: number) =>
      `campaign for "${election}" failed: ${reason}; retrying in ${retryMs} ms`,
    becameLeader: (election: string, token: bigint) => `became leader of "${election}" (fencing token ${token})`,
    noScheduler: (methods: readonly string[]) =>
      `${methods.join(', ')} ${methods.length === 1 ? 'is a' : 'are'} guarded scheduled job${methods.length === 1 ? '' : 's'} (@Cron/@Interval/@Timeout), ` +
      'but no ScheduleModule is imported: nothing will ever call ' + (methods.length === 1 ? 'it' : 'them') + '. Import ScheduleModule.forRoot() from @nestjs/schedule.',
    // ---- queue engine, watches (issue 11)
    keyRemovalFailed: (key: string, reason: string, retrying: boolean) =>
      `could not delete ${key}: ${reason}` + (retrying ? '; retrying until the session ends' : ''),
    watchRefused: (reason: string) => `etcd refused to create a watch (${reason}); re-authenticating and reopening the watch stream`,
    etcd3InternalsMissing: (missing: readonly string[]) =>
      `etcd3's internals changed (missing: ${missing.join(', ')}): the recovery of watches etcd refuses to create ` +
      '(e.g. after an auth token expired) cannot work with this etcd3 version. Pin etcd3 1.1.x or update nest-etcd-coordination.',
    lostLeadership: (election: string, reason: string) => `lost leadership of "${election}": ${reason}`,
  },
} as const;

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value);
  return `of type ${value === null ? 'null' : typeof value}`;
}

// ---------------------------------------------------------------------------
// Module definition, names and options (issues 11.4, 11.6, 12.5, 17.5).
// A separate object so that other engineers' additions to `Messages` merge
// without conflicts.
// ---------------------------------------------------------------------------

/** Why a character is refused in a name, namespace, identity or host. */
export type UnsafeCharacterKind = 'lone surrogate' | 'control character' | 'format character' | 'line separator' | 'white space';

/** Texts of the module definition and of name/option validation. */
export const ModuleMessages = {
  /** Two CoordinationModule instances in one application (issue 12.5). */
  moduleImportedTwice: (instances: number) =>
    `CoordinationModule is imported twice in this application (${instances} instances). ` +
    'Each instance opens its own etcd session, so ElectionService.isLeader() could follow one session ' +
    'while @LeaderOnly follows the other. Import CoordinationModule once, in the root module: it is global ' +
    '(isGlobal defaults to true), so every module can inject LockService and ElectionService without importing it. ' +
    'If the options come from another module, use CoordinationModule.forRootAsync({ imports: [ConfigModule], ' +
    'inject: [ConfigService], useFactory: ... }) in the root module, or share one CoordinationModule.forRoot(...) ' +
    'value instead of calling forRoot in each module.',
  forRootAsyncWays: (given: readonly string[]) =>
    `needs exactly one of useFactory, useClass, useExisting (got ${given.length ? given.join(', ') : 'none'})`,
  isGlobalNotBoolean: (value: unknown) => `must be a boolean, got ${value === null ? 'null' : typeof value}`,
  optionsNotObject: () => 'must be an object',
  /** e.g. "contains U+200B (format character) at index 3". */
  unsafeCharacter: (kind: UnsafeCharacterKind, codePoint: number, index: number) => unsafeCharacter(kind, codePoint, index),
  unsafeInName: (kind: UnsafeCharacterKind, codePoint: number, index: number) =>
    `${unsafeCharacter(kind, codePoint, index)}; names must be well-formed text without control or format characters`,
  namespaceSeparator: (namespace: string) => {
    const shown = visibleText(namespace);
    return `${JSON.stringify(shown)} must end with one of / : . - _ (otherwise namespaces overlap: lock "1job" in ` +
      `${JSON.stringify(shown)} and lock "job" in ${JSON.stringify(shown + '1')} would be the same key); e.g. ${JSON.stringify(shown + '/')}`;
  },
  hostUnsafeCharacter: (host: string, kind: UnsafeCharacterKind, codePoint: number, index: number) =>
    `${JSON.stringify(visibleText(host))} ${unsafeCharacter(kind, codePoint, index)}; ` +
    'hosts are not trimmed: write them without white space, e.g. "127.0.0.1:2379,127.0.0.2:2379"',
  hostHasCredentials: () =>
    'must not contain "user:password@" (the value is not shown because it may hold a password); use the "auth" option',
  environmentVariable: (problem: string) => `environment variable: ${problem}`,
  /**
   * `value` with every character that JSON.stringify leaves as is but that
   * would be invisible or reorder text in a log line (C1, format characters,
   * line separators) written as `<U+XXXX>`.
   */
  visibleText: (value: string) => visibleText(value),
} as const;

function unsafeCharacter(kind: UnsafeCharacterKind, codePoint: number, index: number): string {
  return kind === 'lone surrogate'
    ? `contains a lone surrogate ${codePointLabel(codePoint)} at index ${index} (not well-formed UTF-16; ` +
      'it would be written to etcd as U+FFFD, so different names would share one key)'
    : `contains ${codePointLabel(codePoint)} (${kind}) at index ${index}`;
}

function codePointLabel(codePoint: number): string {
  return `U+${codePoint.toString(16).toUpperCase().padStart(4, '0')}`;
}

function visibleText(value: string): string {
  return value.replace(/[\u0080-\u009f\p{Cf}\u2028\u2029]/gu, (ch) => `<${codePointLabel(ch.codePointAt(0)!)}>`);
}

/**
 * Texts of the health indicator (`nest-etcd-coordination/health`): why the
 * coordination check reports down. Never include a secret.
 */
export const HealthMessages = {
  connecting: () => 'No etcd session yet: still connecting to etcd',
  lost: (reason: string | undefined) =>
    `The etcd session was lost${reason ? ` (${reason})` : ''}; a new session is created as soon as etcd answers`,
  closed: () => 'The etcd session is closed (application shut down)',
  shuttingDown: () => 'The application is shutting down',
} as const;

// ---------------------------------------------------------------------------
// The testing kit, `nest-etcd-coordination/testing` (issue 12.1).
// ---------------------------------------------------------------------------

/** Texts of the testing kit (in-memory fake and throwaway etcd). */
export const TestingMessages = {
  sessionExpired: () => 'expired by FakeCoordination.expireSession()',
  deposed: (election: string) => `Leadership of election "${election}" was taken away by FakeCoordination.depose()`,
  unsupportedRequest: (what: string) =>
    `The in-memory testing kit does not support this etcd request (${what}); this is a bug of nest-etcd-coordination/testing, please report it.`,
  notVisible: (what: string, ms: number) =>
    `FakeCoordination: ${what} did not become visible within ${ms} ms (is the application closed, or the election not campaigned?)`,
  unknownOption: (key: string, known: readonly string[]) =>
    `CoordinationTestingModule: unknown option "${key}" (known: ${known.join(', ')})`,
  invalidOption: (key: string, problem: string) => `CoordinationTestingModule: invalid option "${key}": ${problem}`,
  etcdNotFound: (tried: readonly string[]) =>
    `startEtcd(): no etcd binary found (looked for ${tried.join(', ')}). Install etcd (Debian/Ubuntu: ` +
    '"apt-get install etcd-server"; macOS: "brew install etcd"; or a release from https://github.com/etcd-io/etcd/releases), ' +
    'put it on PATH, or set ETCD_BIN to the binary or the directory that holds it.',
  etcdExited: (how: string, logs: string) => `startEtcd(): etcd ${how} before it became healthy` + (logs ? `\n--- last etcd output ---\n${logs}` : ''),
  etcdNotHealthy: (url: string, ms: number, problem: string, logs: string) =>
    `startEtcd(): etcd at ${url} was not healthy within ${ms} ms (${problem})` + (logs ? `\n--- last etcd output ---\n${logs}` : ''),
} as const;

// ---------------------------------------------------------------------------
// Operating it (issue 15): LockService.forceRelease and the CLI's release.
// ---------------------------------------------------------------------------

/** Texts of forced releases (`LockService.forceRelease`, `nest-etcd-coordination release`). Never include a secret. */
export const OperateMessages = {
  notAMutexHolder: (name: string, key: string, kind: string) =>
    `forceRelease("${name}"): the oldest key ${JSON.stringify(key)} is ` +
    (kind === 'foreign'
      ? 'not a lock key (not of the form <name>/<lease hex>): nothing deleted'
      : `a ${kind} key, and a ${kind} can have several holders: name the one to delete ({ key } in the API, --holder-key in the CLI; see \`nest-etcd-coordination inspect\`)`),
  keyOutsideName: (name: string, key: string, prefix: string) =>
    `forceRelease("${name}"): key ${JSON.stringify(key)} is not one of this name's keys (they start with ${JSON.stringify(prefix)})`,
  invalidRevision: (value: unknown) =>
    `forceRelease: revision must be a positive bigint (the create revision shown by inspect), got ${typeof value === 'bigint' ? value.toString() : typeof value}`,
  invalidOptions: () => 'forceRelease: options must be an object like { key?: string, revision?: bigint, graceMs?: number, by?: string }',
  invalidGrace: (value: unknown) => `forceRelease: graceMs must be an integer number of ms from 0 to 600000, got ${JSON.stringify(value) ?? String(value)}`,
  /** Logged at warn by the instance (or CLI user) that deleted a holder's key. */
  forceReleased: (by: string, name: string, key: string, leaseHex: string, revision: bigint, holder: string) =>
    `force release by ${JSON.stringify(by)}: deleted ${JSON.stringify(key)} of "${name}" ` +
    `(holder ${holder === '' ? '(identity not recorded)' : JSON.stringify(holder)}, lease ${leaseHex}, revision ${revision})`,
} as const;
// The observability part's texts (events, metrics, logger and logLevel options, outage logs).
export { ObservabilityMessages } from './observability/observability.messages.js';
/** Texts of membership and sharded ownership (lib/membership, lib/shards). */
export const ShardMessages = {
  memberValueNotJson: (problem: string) => `Member value must be JSON-serialisable (${problem})`,
  memberValueTooLarge: (bytes: number, max: number) => `Member value is ${bytes} bytes of JSON; at most ${max} are allowed`,
  invalidShardCount: (group: string, shards: unknown, max: number) =>
    `Shard group "${group}": shards must be an integer from 1 to ${max} (got ${JSON.stringify(shards) ?? String(shards)})`,
  groupRedefined: (group: string, existing: number, requested: number) =>
    `Shard group "${group}" already exists with ${existing} shards; it cannot be opened again with ${requested}`,
  unknownGroup: (group: string, where: string) =>
    `${where}: shard group "${group}" is not open in this application; call ShardService.group("${group}", { shards }) first (e.g. in a constructor or onModuleInit)`,
  groupClosed: (group: string) => `Shard group "${group}" is closed`,
  invalidShard: (group: string, shard: unknown, shards: number) =>
    `Shard group "${group}": shard must be an integer from 0 to ${shards - 1} (got ${JSON.stringify(shard) ?? String(shard)})`,
  keyNotString: (group: string, key: unknown) =>
    `Shard group "${group}": the key must be a string (got ${typeof key}); convert numbers with String(key)`,
  keyOfNotFunction: (where: string) => `ShardOwned on ${where}: the key selector must be a function of the method's arguments`,
  shardReleased: (group: string, shard: number) => `Shard ${shard} of group "${group}" was handed on (rebalanced or released)`,
  shardLost: (group: string, shard: number) => `Shard ${shard} of group "${group}" was lost (its key is gone)`,
  log: {
    registerFailed: (reason: string, retryMs: number, refused: boolean) =>
      `registering in the member list failed: ${reason}; retrying in ${retryMs} ms` +
      (refused ? ' (give the role write access to the namespace, or opt out with membership: false)' : ''),
    forEachSkipped: (where: string, group: string) => `ForEachOwnedShard: ${where} skipped: this instance owns no shard of "${group}"`,
    shardOwnedSkipped: (where: string, group: string, shard: number) =>
      `ShardOwned: ${where} skipped: shard ${shard} of "${group}" is not owned by this instance`,
    shardRunFailed: (where: string, group: string, shard: number, message: string) =>
      `ForEachOwnedShard: ${where} failed for shard ${shard} of "${group}": ${message}`,
  },
} as const;

// Once-per-firing scheduled jobs (issue 13, lib/jobs/).
// ---------------------------------------------------------------------------

/** Texts of once-per-firing jobs. */
export const JobMessages = {
  invalidChoice: (where: string, key: string, value: unknown, allowed: readonly string[]) =>
    `${where}: invalid ${key} ${JSON.stringify(value) ?? String(value)} (expected one of ${allowed.map((a) => `'${a}'`).join(', ')})`,
  invalidInteger: (where: string, key: string, value: unknown, min: number, max: number) =>
    `${where}: invalid ${key} ${JSON.stringify(value) ?? String(value)} (expected an integer from ${min} to ${max})`,
  firingRequired: (where: string, firing: unknown, stray: string | undefined) =>
    firing !== undefined
      ? `${where}: invalid firing ${JSON.stringify(firing) ?? String(firing)} (the only value is 'once')`
      : `${where}: option "${stray}" needs firing: 'once'`,
  unknownOption: (where: string, key: string, known: readonly string[]) => `${where}: unknown option "${key}" (known: ${known.join(', ')})`,
  notScheduled: (where: string) =>
    `${where}: firing: 'once' needs a @Cron(<cron expression or date>) or @Interval(ms) of @nestjs/schedule on the same method`,
  noCronPackage: (where: string) =>
    `${where}: firing: 'once' on a @Cron method needs the "cron" package that @nestjs/schedule depends on, and it could not be loaded`,
  jobsMissing: (where: string) => `${where}: firing: 'once' needs the JobsService of CoordinationModule, which this application does not provide`,
  firingSkipped: (job: string, slot: string, why: string) => `Job "${job}" slot ${slot} not run here: ${why}`,
  misfire: (job: string, missed: number, policy: string, running: number) =>
    `Job "${job}": ${missed} missed slot(s) within misfireThreshold; misfire '${policy}' runs ${running} of them`,
  rerun: (job: string, slot: string, attempt: number) => `Job "${job}" slot ${slot}: the runner died mid-run; re-running it (attempt ${attempt})`,
  recordFailed: (job: string, slot: string, message: string) => `Job "${job}" slot ${slot}: could not record the run's end in etcd (${message})`,
} as const;

// The shutdown drain's texts (lib/shutdown/).
export { ShutdownMessages } from './shutdown/shutdown.messages.js';
