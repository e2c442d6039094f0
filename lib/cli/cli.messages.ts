// Texts of the nest-etcd-coordination CLI (help, prompts, errors). Kept apart from
// lib/coordination.messages.ts because they are many and only the CLI uses them.
// Never pass a secret (password, key material) to any of these.

const CONNECTION_HELP = `Connection options (every command; a flag wins over its environment variable):
  -e, --endpoints <list>     etcd endpoints, comma-separated host:port or http(s)://host:port
                             env: ETCD_ENDPOINTS, else ETCDCTL_ENDPOINTS, else ETCD_HOSTS
                             (default 127.0.0.1:2379)
  -n, --namespace <prefix>   the applications' namespace option     env: ETCD_NAMESPACE (default "")
      --user <name>          etcd user (etcdctl's "name:password" is accepted too)
                                                                     env: ETCD_USERNAME
      --password <password>  etcd password; prefer the env variable  env: ETCD_PASSWORD
      --cacert <file>        CA certificate (PEM) of etcd's TLS       env: ETCD_CACERT
      --cert <file>          client certificate (PEM), mutual TLS     env: ETCD_CERT
      --key <file>           client private key (PEM), mutual TLS     env: ETCD_KEY
      --request-timeout <ms> deadline of each etcd request (default 5000)
      --fencing-epoch <n>    the applications' fencingEpoch option, for the tokens shown (default 0)
  -h, --help                 this help
Passwords and key material are never printed.`;

export const CliMessages = {
  mainHelp: () => `Usage: nest-etcd-coordination <command> [options]

See and operate the locks, read/write locks, semaphores, elections and sessions that
nest-etcd-coordination (and etcd's own Go recipes, etcdctl lock / elect) keep in etcd.

Commands:
  inspect          show every lock, read/write lock, semaphore, election and live session
  release <name>   delete the current holder's key of a lock (after a confirmation)
  help [command]   help of a command

${CONNECTION_HELP}`,

  inspectHelp: () => `Usage: nest-etcd-coordination inspect [options]

Reads the namespace once (or follows it with --watch) and shows, for every name:
  locks            holder identity, since (create revision), fencing token, waiters in order
  read/write locks holders (readers or the writer) and waiters in order
  semaphores       permits used and waiting (permits are not stored in etcd: see --permits)
  elections        leader, proclaimed value, candidates in order
  sessions         every lease found on the keys: TTL left, identities
and every key it cannot classify. A mutex and an election have the same key format in
etcd (Go's <name>/<lease hex>): names not given with --election or --lock are shown as
"lock or election".

Options:
      --json                    print one JSON document (one per line with --watch)
      --watch                   redraw whenever a key of the namespace changes (Ctrl-C stops)
      --watch-exit-after <n>    with --watch: exit after n drawings (the first one counts)
      --election <name>         show this name as an election (repeatable; default: leader)
      --lock <name>             show this name as a lock (repeatable)
      --permits <name>=<n>      the semaphore's permits, to tell holders from waiters (repeatable)

${CONNECTION_HELP}`,

  releaseHelp: () => `Usage: nest-etcd-coordination release <name> [options]

Deletes the current holder's key of the lock <name> (the oldest key, as inspect shows it),
in a transaction that compares its create revision: a holder that took the lock after
the confirmation is never deleted. The next waiter then gets the lock. The holder's
process learns it through its watch of held keys (and its guarded writes are refused):
fence what the lock protects. Who did it is printed and logged (stderr).

Options:
  -y, --yes                 do not ask for confirmation
      --holder-key <key>    delete this exact key of the name (a read/write lock holder or a
                            semaphore permit; the full key, as inspect shows it)
      --revision <n>        delete only if the key still has this create revision
      --as <who>            who is doing it, for the log (default: <user>@<host>)

Exit codes: 0 deleted, 3 nothing deleted (not held, changed meanwhile, or not confirmed),
2 usage error, 1 failure.

${CONNECTION_HELP}`,

  unknownCommand: (command: string) => `unknown command ${JSON.stringify(command)} (commands: inspect, release, help)`,
  usage: (problem: string, command: string) => `${problem}\nRun "nest-etcd-coordination ${command} --help" for the options.`,
  missingName: () => 'release needs the name of the lock: nest-etcd-coordination release <name>',
  extraArguments: (args: readonly string[]) => `unexpected argument${args.length === 1 ? '' : 's'}: ${args.map((a) => JSON.stringify(a)).join(' ')}`,
  notANumber: (flag: string, value: string) => `${flag} must be a whole number, got ${JSON.stringify(value)}`,
  badPermits: (value: string) => `--permits must be <name>=<n> with n a whole number from 1, got ${JSON.stringify(value)}`,
  watchOnly: () => '--watch-exit-after needs --watch',
  passwordWithoutUser: () => 'a password was given (--password or ETCD_PASSWORD) without a user (--user or ETCD_USERNAME)',
  userWithoutPassword: () => 'a user was given without a password: set ETCD_PASSWORD (or --password)',
  certWithoutCa: () => '--cert/--key (ETCD_CERT/ETCD_KEY) need --cacert (ETCD_CACERT): the CA that signed etcd\'s certificate',
  badConnectionOption: (source: string, problem: string) => `invalid ${source}: ${problem}`,
  certKeyPair: () => '--cert and --key (ETCD_CERT and ETCD_KEY) must be given together',
  unreadableFile: (what: string, file: string, reason: string) => `cannot read ${what} ${JSON.stringify(file)}: ${reason}`,
  confirm: (key: string, holder: string, lease: string, revision: bigint) =>
    `Delete ${JSON.stringify(key)} (holder ${holder === '' ? '(identity not recorded)' : JSON.stringify(holder)}, ` +
    `lease ${lease}, revision ${revision})? The holder loses the lock. [y/N] `,
  notHeld: (name: string) => `"${name}" is not held: nothing deleted`,
  notAtRevision: (key: string, revision: bigint) => `${key} is not at revision ${revision} (released or taken by a newer holder): nothing deleted`,
  changedMeanwhile: (name: string) => `the holder of "${name}" changed before the delete (released, or a newer holder): nothing deleted; look again`,
  declined: () => 'not confirmed: nothing deleted',
  released: (key: string, holder: string, lease: string, revision: bigint) =>
    `released: deleted ${JSON.stringify(key)} (holder ${holder === '' ? '(identity not recorded)' : JSON.stringify(holder)}, lease ${lease}, revision ${revision})`,
  failed: (message: string) => `error: ${message}`,
  retrying: (ms: number) => `--watch: reading again in ${ms} ms`,
} as const;
