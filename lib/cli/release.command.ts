// `nest-etcd-coordination release <name>`: deletes the current holder's key after a confirmation.
import { hostname, userInfo } from 'node:os';
import { createInterface } from 'node:readline';
import { OperateMessages } from '../coordination.messages.js';
import { leaseHex, namePrefix, validateName } from '../etcd/keys.js';
import { parseArgs } from 'node:util';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { findForceReleaseTarget, forceReleaseKey } from '../lock/force-release.js';
import { CliMessages } from './cli.messages.js';
import { connectionOptions, parsing, RELEASE_OPTIONS, wholeNumber } from './cli-options.js';
import type { CliIo } from './cli-io.js';
import { withConnection } from './connection.js';

/** Exit code when nothing was deleted (not held, changed meanwhile, not confirmed). */
export const NOTHING_RELEASED = 3;

function operator(): string {
  try {
    return `${userInfo().username}@${hostname()}`;
  } catch {
    // userInfo() throws for a uid without a passwd entry (some containers).
    return `uid ${process.getuid?.() ?? '?'}@${hostname()}`;
  }
}

/** The first line typed on stdin (false when stdin ends first). */
function confirmed(io: CliIo): Promise<boolean> {
  return new Promise((resolve) => {
    const lines = createInterface({ input: io.stdin, terminal: false });
    let answered = false;
    lines.once('line', (line) => {
      answered = true;
      lines.close();
      resolve(/^\s*(y|yes)\s*$/i.test(line));
    });
    lines.once('close', () => {
      if (!answered) resolve(false);
    });
  });
}

export async function releaseCommand(args: string[], io: CliIo): Promise<number> {
  const { values, positionals } = parsing('release', () => parseArgs({ args, options: RELEASE_OPTIONS, allowPositionals: true, strict: true }));
  if (values.help) {
    io.stdout.write(`${CliMessages.releaseHelp()}\n`);
    return 0;
  }
  const [name, ...extra] = positionals;
  if (name === undefined) throw new InvalidUsageError(CliMessages.usage(CliMessages.missingName(), 'release'));
  if (extra.length > 0) throw new InvalidUsageError(CliMessages.usage(CliMessages.extraArguments(extra), 'release'));
  validateName('lock', name);
  const revision = values.revision === undefined ? undefined : BigInt(wholeNumber('--revision', values.revision));
  const who = values.as ?? operator();
  const options = connectionOptions(values, io.env);
  const prefix = namePrefix(options.namespace, name);
  return withConnection(options, async ({ ops }) => {
    const target = await findForceReleaseTarget(ops, name, prefix, { key: values['holder-key'] });
    if (!target) {
      io.stdout.write(`${CliMessages.notHeld(name)}\n`);
      return NOTHING_RELEASED;
    }
    const key = target.key.toString('utf8');
    const seen = BigInt(target.create_revision);
    if (revision !== undefined && revision !== seen) {
      io.stdout.write(`${CliMessages.notAtRevision(key, revision)}\n`);
      return NOTHING_RELEASED;
    }
    if (!values.yes) {
      io.stderr.write(CliMessages.confirm(key, target.value.toString('utf8'), leaseHex(BigInt(target.lease)), seen));
      if (!(await confirmed(io))) {
        io.stdout.write(`${CliMessages.declined()}\n`);
        return NOTHING_RELEASED;
      }
    }
    // Exactly the key that was shown, and only at the revision that was shown.
    const released = await forceReleaseKey(ops, name, prefix, { key, revision: seen, by: who });
    if (!released) {
      io.stdout.write(`${CliMessages.changedMeanwhile(name)}\n`);
      return NOTHING_RELEASED;
    }
    const lease = leaseHex(released.leaseId);
    io.stdout.write(`${CliMessages.released(released.key, released.identity, lease, released.revision)}\n`);
    io.stderr.write(`${new Date().toISOString()} WARN [nest-etcd-coordination] ${OperateMessages.forceReleased(who, name, released.key, lease, released.revision, released.identity)}\n`);
    return 0;
  });
}
