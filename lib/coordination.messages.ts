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
  resigned: (election: string) => `Resigned from election "${election}"`,
  electionDisabled: () =>
    'The default election is disabled (option election: false); pass an election name explicitly.',
  campaignAborted: (election: string) => `Campaign for election "${election}" was aborted`,
  moduleMissing: (decorator: string, target: string) =>
    `@${decorator} on ${target} cannot run: CoordinationModule is not initialized in this application. ` +
    'Import CoordinationModule.forRoot(...) (or forRootAsync) in your root module. The method was NOT run.',
  decoratedMethodNotAsync: (decorator: string, target: string) =>
    `@${decorator} on ${target}: the method must return a Promise (declare it async).`,
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
    campaignFailed: (election: string, reason: string, retryMs: number) =>
      `campaign for "${election}" failed: ${reason}; retrying in ${retryMs} ms`,
    becameLeader: (election: string, token: bigint) => `became leader of "${election}" (fencing token ${token})`,
    lostLeadership: (election: string, reason: string) => `lost leadership of "${election}": ${reason}`,
  },
} as const;

function describeValue(value: unknown): string {
  if (typeof value === 'string') return JSON.stringify(value.length > 80 ? value.slice(0, 80) + '…' : value);
  return `of type ${value === null ? 'null' : typeof value}`;
}
