// `npm run soak` (through scripts/soak.mjs): runs test/soak/soak.ts, prints the summary and
// writes the JSON result. Exit code 0 when every invariant held, 1 when one failed, 2 on a
// usage error or when the soak could not run.
//   node <build>/test/soak/run.js --minutes N [--cluster] [--seed S] [--workers W] [--json out.json]
//                                 [--ttl SECONDS] [--permits P] [--quiet SECONDS]
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { formatSummary } from './report.js';
import { runSoak } from './soak.js';

const USAGE = 'usage: npm run soak -- --minutes N [--cluster] [--seed S] [--workers W] [--json out.json] [--ttl SECONDS] [--permits P] [--quiet SECONDS]';

function parse(argv: string[]) {
  const out: { minutes: number; cluster: boolean; seed?: number; workers: number; json?: string; ttl: number; permits: number; quiet?: number } = {
    minutes: 1,
    cluster: false,
    workers: 4,
    ttl: 3,
    permits: 2,
  };
  const num = (flag: string, value: string | undefined, int: boolean, min: number): number => {
    const n = Number(value);
    if (value === undefined || !Number.isFinite(n) || n < min || (int && !Number.isInteger(n))) throw new Error(`${flag} needs ${int ? 'an integer' : 'a number'} >= ${min}, got ${value ?? 'nothing'}`);
    return n;
  };
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i]!;
    const next = () => argv[++i];
    switch (arg) {
      case '--minutes': out.minutes = num(arg, next(), false, 0.5); break;
      case '--cluster': out.cluster = true; break;
      case '--seed': out.seed = num(arg, next(), true, 0); break;
      case '--workers': out.workers = num(arg, next(), true, 2); break;
      case '--json': { const v = next(); if (!v) throw new Error('--json needs a path'); out.json = v; break; }
      case '--ttl': out.ttl = num(arg, next(), true, 2); break;
      case '--permits': out.permits = num(arg, next(), true, 1); break;
      case '--quiet': out.quiet = num(arg, next(), false, 5); break;
      case '-h':
      case '--help': console.log(USAGE); process.exit(0);
      // eslint-disable-next-line no-fallthrough
      default: throw new Error(`unknown option ${arg}`);
    }
  }
  return out;
}

async function main(): Promise<number> {
  let args: ReturnType<typeof parse>;
  try {
    args = parse(process.argv.slice(2));
  } catch (err) {
    console.error(`soak: ${(err as Error).message}\n${USAGE}`);
    return 2;
  }
  const result = await runSoak({
    durationMs: Math.round(args.minutes * 60_000),
    cluster: args.cluster,
    seed: args.seed,
    workers: args.workers,
    ttlSeconds: args.ttl,
    permits: args.permits,
    quietMs: args.quiet === undefined ? undefined : Math.round(args.quiet * 1000),
    log: (line) => console.log(`soak: ${line}`),
  });
  const stamp = result.startedAt.replace(/[:.]/g, '-');
  const file = path.resolve(args.json ?? path.join('artifacts', `soak-${args.cluster ? 'cluster' : 'single'}-seed${result.seed}-${stamp}.json`));
  mkdirSync(path.dirname(file), { recursive: true });
  writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
  const eventsFile = file.replace(/\.json$/, '') + '.events.jsonl';
  writeFileSync(eventsFile, (result.events ?? []).map((e) => JSON.stringify(e)).join('\n') + '\n');
  console.log(`\n${formatSummary(result)}\nsoak: result written to ${path.relative(process.cwd(), file)} (every worker message: ${path.relative(process.cwd(), eventsFile)})`);
  console.log(`soak: replay this run's fault plan with --seed ${result.seed}${args.cluster ? ' --cluster' : ''} --workers ${args.workers}`);
  return result.error ? 2 : result.ok ? 0 : 1;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`soak: ${(err as Error).stack ?? String(err)}`);
    process.exit(2);
  },
);
