// Command-line parsing (node:util parseArgs) and the connection options, from flags or ETCD_*
// environment variables, validated by the module's own resolveCoordinationOptions.
import { readFileSync } from 'node:fs';
import type { ParseArgsConfig } from 'node:util';
import { DEFAULT_ELECTION, DEFAULT_HOST } from '../coordination.constants.js';
import { resolveCoordinationOptions, type ResolvedCoordinationOptions } from '../coordination.options.js';
import { InvalidOptionsError, InvalidUsageError } from '../errors/coordination.errors.js';
import { CliMessages } from './cli.messages.js';

type Options = NonNullable<ParseArgsConfig['options']>;

export const CONNECTION_OPTIONS = {
  endpoints: { type: 'string', short: 'e' },
  namespace: { type: 'string', short: 'n' },
  user: { type: 'string' },
  password: { type: 'string' },
  cacert: { type: 'string' },
  cert: { type: 'string' },
  key: { type: 'string' },
  'request-timeout': { type: 'string' },
  'fencing-epoch': { type: 'string' },
  help: { type: 'boolean', short: 'h' },
} as const satisfies Options;

export const INSPECT_OPTIONS = {
  ...CONNECTION_OPTIONS,
  json: { type: 'boolean' },
  watch: { type: 'boolean' },
  'watch-exit-after': { type: 'string' },
  election: { type: 'string', multiple: true },
  lock: { type: 'string', multiple: true },
  permits: { type: 'string', multiple: true },
} as const satisfies Options;

export const RELEASE_OPTIONS = {
  ...CONNECTION_OPTIONS,
  yes: { type: 'boolean', short: 'y' },
  // --key is the TLS client key (as in etcdctl), so the exact key to delete is --holder-key.
  'holder-key': { type: 'string' },
  revision: { type: 'string' },
  as: { type: 'string' },
} as const satisfies Options;

/** Runs `parse` (a parseArgs call); its errors become an InvalidUsageError pointing at the command's help. */
export function parsing<T>(command: string, parse: () => T): T {
  try {
    return parse();
  } catch (err) {
    throw new InvalidUsageError(CliMessages.usage((err as Error).message, command));
  }
}

/** A whole number from a flag, or InvalidUsageError. */
export function wholeNumber(flag: string, value: string): number {
  if (!/^\d+$/.test(value)) throw new InvalidUsageError(CliMessages.notANumber(flag, value));
  return Number(value);
}

/** `--permits name=n` values as a map. */
export function parsePermits(values: readonly string[] | undefined): Map<string, number> {
  const permits = new Map<string, number>();
  for (const value of values ?? []) {
    const match = /^(.+)=(\d+)$/.exec(value);
    if (!match || Number(match[2]) < 1) throw new InvalidUsageError(CliMessages.badPermits(value));
    permits.set(match[1]!, Number(match[2]));
  }
  return permits;
}

/** `--election` values, or the module's default election. */
export function electionNames(values: readonly string[] | undefined): string[] {
  return values && values.length > 0 ? [...values] : [DEFAULT_ELECTION];
}

type ConnectionValues = { [K in keyof typeof CONNECTION_OPTIONS]?: (typeof CONNECTION_OPTIONS)[K]['type'] extends 'boolean' ? boolean : string };

function readPem(what: string, file: string): Buffer {
  try {
    return readFileSync(file);
  } catch (err) {
    // The reason is the OS error (ENOENT, EACCES...), never the file's content.
    throw new InvalidUsageError(CliMessages.unreadableFile(what, file, (err as NodeJS.ErrnoException).code ?? (err as Error).message));
  }
}

const nonEmpty = (value: string | undefined): string | undefined => (value === undefined || value === '' ? undefined : value);

/**
 * The connection as the module would make it: endpoints, namespace, auth and
 * TLS from the flags, else from ETCD_ENDPOINTS / ETCDCTL_ENDPOINTS /
 * ETCD_HOSTS, ETCD_NAMESPACE, ETCD_USERNAME, ETCD_PASSWORD, ETCD_CACERT,
 * ETCD_CERT, ETCD_KEY. Throws InvalidUsageError naming the flag or variable
 * (its message never contains the password).
 */
export function connectionOptions(values: ConnectionValues, env: NodeJS.ProcessEnv): ResolvedCoordinationOptions {
  const endpoints = nonEmpty(values.endpoints) ?? nonEmpty(env.ETCD_ENDPOINTS) ?? nonEmpty(env.ETCDCTL_ENDPOINTS) ?? nonEmpty(env.ETCD_HOSTS) ?? DEFAULT_HOST;
  let user = nonEmpty(values.user) ?? nonEmpty(env.ETCD_USERNAME);
  let password = nonEmpty(values.password) ?? nonEmpty(env.ETCD_PASSWORD);
  if (user !== undefined && password === undefined && user.includes(':')) {
    // etcdctl's --user name:password
    password = user.slice(user.indexOf(':') + 1);
    user = user.slice(0, user.indexOf(':'));
  }
  if (password !== undefined && user === undefined) throw new InvalidUsageError(CliMessages.passwordWithoutUser());
  if (user !== undefined && password === undefined) throw new InvalidUsageError(CliMessages.userWithoutPassword());
  const cacert = nonEmpty(values.cacert) ?? nonEmpty(env.ETCD_CACERT);
  const cert = nonEmpty(values.cert) ?? nonEmpty(env.ETCD_CERT);
  const key = nonEmpty(values.key) ?? nonEmpty(env.ETCD_KEY);
  if ((cert === undefined) !== (key === undefined)) throw new InvalidUsageError(CliMessages.certKeyPair());
  if (cert !== undefined && cacert === undefined) throw new InvalidUsageError(CliMessages.certWithoutCa());
  const credentials = cacert === undefined ? undefined : {
    rootCertificate: readPem('the CA certificate (--cacert)', cacert),
    ...(cert !== undefined && key !== undefined ? { certChain: readPem('the client certificate (--cert)', cert), privateKey: readPem('the client key (--key)', key) } : {}),
  };
  const timeout = values['request-timeout'];
  const epoch = values['fencing-epoch'];
  return asCliError(() => resolveCoordinationOptions(
    {
      hosts: endpoints.split(','),
      namespace: values.namespace ?? env.ETCD_NAMESPACE ?? '',
      auth: user !== undefined && password !== undefined ? { username: user, password } : undefined,
      credentials,
      requestTimeout: timeout === undefined ? undefined : wholeNumber('--request-timeout', timeout),
      fencingEpoch: epoch === undefined ? undefined : wholeNumber('--fencing-epoch', epoch),
      identity: 'nest-etcd-coordination-cli',
      election: false,
    },
    {},
  ));
}

/** Where each module option comes from on the command line, for messages. */
const CLI_SOURCES: Record<string, string> = {
  hosts: '--endpoints (or ETCD_ENDPOINTS)',
  namespace: '--namespace (or ETCD_NAMESPACE)',
  auth: '--user/--password (or ETCD_USERNAME/ETCD_PASSWORD)',
  credentials: '--cacert/--cert/--key (or ETCD_CACERT/ETCD_CERT/ETCD_KEY)',
  requestTimeout: '--request-timeout',
  fencingEpoch: '--fencing-epoch',
};

/**
 * The module's validation, with its messages naming the flag or variable
 * instead of "CoordinationModule: invalid option" (an InvalidUsageError, as
 * for the CLI's other bad input; the message still never holds a password).
 */
function asCliError<T>(resolve: () => T): T {
  try {
    return resolve();
  } catch (err) {
    if (!(err instanceof InvalidOptionsError)) throw err;
    // "hosts[0]", "auth.username", "credentials.certChain": named by the option they belong to.
    const source = CLI_SOURCES[err.option.replace(/[[.].*$/, '')] ?? err.option;
    const problem = err.message.replace(/^CoordinationModule: invalid option "[^"]*": /, '');
    throw new InvalidUsageError(CliMessages.badConnectionOption(source, problem));
  }
}
