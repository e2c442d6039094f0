// The nest-etcd-coordination command line: dispatch, help and exit codes. main.ts runs it on the
// process; tests run the built bin as a child process.
import { CoordinationError } from '../errors/coordination.errors.js';
import { CliMessages } from './cli.messages.js';
import type { CliIo } from './cli-io.js';
import { inspectCommand } from './inspect.command.js';
import { releaseCommand } from './release.command.js';

export type { CliIo } from './cli-io.js';

/** Exit code of a usage error (bad flag, option or name). */
export const USAGE_ERROR = 2;

const USAGE_CODES = new Set(['INVALID_USAGE', 'INVALID_OPTIONS', 'INVALID_NAME']);

/** Runs the CLI with `argv` (without node and the script); resolves with the exit code. */
export async function runCli(argv: string[], io: CliIo): Promise<number> {
  const [command, ...rest] = argv;
  try {
    switch (command) {
      case undefined:
      case '-h':
      case '--help':
        io.stdout.write(`${CliMessages.mainHelp()}\n`);
        return command === undefined ? USAGE_ERROR : 0;
      case 'help': {
        const topic = rest[0];
        const text = topic === 'inspect' ? CliMessages.inspectHelp() : topic === 'release' ? CliMessages.releaseHelp() : CliMessages.mainHelp();
        io.stdout.write(`${text}\n`);
        return 0;
      }
      case 'inspect':
        return await inspectCommand(rest, io);
      case 'release':
        return await releaseCommand(rest, io);
      default:
        io.stderr.write(`${CliMessages.failed(CliMessages.unknownCommand(command))}\n`);
        return USAGE_ERROR;
    }
  } catch (err) {
    const usage = err instanceof CoordinationError && USAGE_CODES.has(err.code);
    // Our messages never hold a secret; a foreign error's message is shown as etcd3 gave it.
    io.stderr.write(`${CliMessages.failed(err instanceof Error ? err.message : String(err))}\n`);
    return usage ? USAGE_ERROR : 1;
  }
}
