#!/usr/bin/env node
// `npm test`: dependencies -> etcd binaries -> clean build -> node:test on build/test/**/*.test.js.
//
// Usage:
//   npm test                                   all test files
//   npm test -- lock election                  only files whose path contains "lock" or "election"
//   npm test -- test/harness.test.ts           .ts / build/ paths are mapped to the compiled file
//   npm test -- --test-name-pattern="renew"    passed through to node --test (also --test-only,
//                                              and any other --test-*=value flag)
//   npm test -- --no-build                     reuse the existing build/ (quick re-runs)
//   npm test -- unit                           only test/unit/** (the filter "unit" means that folder):
//                                              no etcd is needed, so ensure-etcd is skipped, and only
//                                              build/ is compiled (dist/ is not needed by those tests)
// Env: TEST_CONCURRENCY (files in parallel, default 2), TEST_TIMEOUT (per test file, ms, default 300000).
//
// The last line printed is always "N passed, N failed[, N skipped]" (leaf tests, see
// scripts/count-reporter.mjs). Exit code is non-zero if anything failed or no test ran.
import { spawn } from 'node:child_process';
import { existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const sourceTestDir = path.join(root, 'test');
const buildTestDir = path.join(root, 'build', 'test');
// Tests of the pure parts: they never start etcd (see test/unit/README.md).
const UNIT_DIR = 'test/unit/';
const DEFAULT_CONCURRENCY = 2; // the CI machine has 2 cores
// Node 20 applies --test-timeout to each test file as a whole (the file is one test of the run), so
// this bounds a file: the package test installs Nest 11 and Terminus from the registry on a cold
// cache, which alone can take two minutes on this machine. A hang still fails, after 5 minutes.
const DEFAULT_TIMEOUT_MS = 300_000;
// node --test flags that take a separate value argument ("--flag value").
const VALUE_FLAGS = new Set(['--test-name-pattern', '--test-timeout', '--test-concurrency']);

class SetupError extends Error {}

function run(cmd, args, opts = {}) {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { cwd: root, stdio: 'inherit', ...opts });
    // Ctrl-C reaches the child through the terminal's process group; a plain `kill` of this
    // script (CI cancelling the job) does not, so forward it.
    const forward = (signal) => child.kill(signal);
    process.on('SIGTERM', forward);
    child.on('error', (err) => {
      console.error(`test: cannot run ${cmd}: ${err.message}`);
      resolve(127);
    });
    child.on('close', (code, signal) => {
      process.off('SIGTERM', forward);
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

function parseArgs(argv) {
  const nodeFlags = [];
  const filters = [];
  let build = true;
  for (let i = 0; i < argv.length; i++) {
    const arg = argv[i];
    if (arg === '--no-build') build = false;
    else if (VALUE_FLAGS.has(arg)) {
      if (i + 1 >= argv.length) throw new SetupError(`${arg} needs a value`);
      nodeFlags.push(`${arg}=${argv[++i]}`);
    } else if (arg.startsWith('--test-')) nodeFlags.push(arg);
    else if (arg.startsWith('-')) throw new SetupError(`unknown option ${arg}`);
    else filters.push(normalizeFilter(arg));
  }
  return { nodeFlags, filters, build };
}

/** Lets people pass the source path (test/foo.test.ts) or the compiled one. */
function normalizeFilter(filter) {
  // "unit" alone means the unit folder, not every path that happens to contain "unit" (community.test.ts).
  if (filter === 'unit' || filter === 'unit/') return UNIT_DIR;
  return filter
    .replace(/\\/g, '/')
    .replace(/^\.\//, '')
    .replace(/^build\//, '')
    .replace(/\.ts$/, '.js');
}

function findTestFiles(dir, suffix) {
  if (!existsSync(dir)) return [];
  const found = [];
  for (const entry of readdirSync(dir, { withFileTypes: true })) {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) found.push(...findTestFiles(full, suffix));
    else if (entry.isFile() && entry.name.endsWith(suffix)) found.push(full);
  }
  return found.sort();
}

/** "test/..." paths of the compiled test files the filters select (before building: from the sources). */
function selectFiles(filters, { fromSources }) {
  // Match against "test/..." so a filter can be written the way the source tree looks.
  const all = fromSources
    ? findTestFiles(sourceTestDir, '.test.ts').map((f) => path.relative(root, f).split(path.sep).join('/').replace(/\.ts$/, '.js'))
    : findTestFiles(buildTestDir, '.test.js').map((f) => path.relative(path.join(root, 'build'), f).split(path.sep).join('/'));
  const where = path.relative(root, fromSources ? sourceTestDir : buildTestDir);
  if (all.length === 0) throw new SetupError(`no test files under ${where}`);
  if (filters.length === 0) return all;
  const selected = all.filter((f) => filters.some((flt) => f.includes(flt)));
  if (selected.length === 0) {
    throw new SetupError(
      `no test file matches ${filters.map((f) => JSON.stringify(f)).join(', ')}; available:\n  ${all.join('\n  ')}`,
    );
  }
  return selected;
}

function positiveInt(name, fallback) {
  const raw = process.env[name];
  if (raw === undefined || raw === '') return fallback;
  const n = Number(raw);
  if (!Number.isInteger(n) || n <= 0) throw new SetupError(`${name} must be a positive integer, got ${raw}`);
  return n;
}

/** True when every selected file is a unit test: then etcd is neither needed nor installed/started. */
function unitOnly(files) {
  return files.length > 0 && files.every((f) => f.startsWith(UNIT_DIR));
}

async function setup(build, files) {
  if (!existsSync(path.join(root, 'node_modules', '.bin', 'tsc'))) {
    const lock = existsSync(path.join(root, 'package-lock.json'));
    console.log(`test: node_modules missing, running npm ${lock ? 'ci' : 'install'}`);
    if ((await run('npm', [lock ? 'ci' : 'install'])) !== 0) throw new SetupError('npm install failed');
  }
  if (unitOnly(files)) {
    console.log('test: only unit tests selected: etcd not needed (ensure-etcd skipped)');
  } else if ((await run('bash', [path.join('scripts', 'ensure-etcd.sh')])) !== 0) {
    throw new SetupError('etcd is not available (see ensure-etcd output above)');
  }
  // The unit tests run from build/ only; dist/ (the published builds) is for the package tests.
  const projects = unitOnly(files) ? ['tsconfig.json'] : [];
  if (build && (await run(process.execPath, [path.join('scripts', 'build.mjs'), ...projects])) !== 0) {
    throw new SetupError('build failed (see tsc output above)');
  }
  // The Go interop tests need Go and etcd's Go sources (installed by ensure-go.sh) and a built
  // Go peer. Build it here, outside the per-file time limit (a cold build takes a minute). If Go
  // cannot be had, the tests themselves say so and are skipped.
  if (files.some((f) => f.includes('go-interop'))) {
    if ((await run('bash', [path.join('scripts', 'ensure-go.sh')])) !== 0) {
      console.log('test: Go is not available (see ensure-go output above): the Go interop tests will be skipped');
    } else if ((await run(process.execPath, [path.join('build', 'test', 'support', 'go-peer.js')])) !== 0) {
      console.log('test: building the Go peer failed (see above): the Go interop tests will fail');
    }
  }
  // The PostgreSQL fencing test needs a PostgreSQL server (Debian's postgresql); without one it skips.
  if (files.some((f) => f.includes('postgres')) && (await run('bash', [path.join('scripts', 'ensure-postgres.sh')])) !== 0) {
    console.log('test: PostgreSQL is not available (see ensure-postgres output above): the PostgreSQL fencing tests will be skipped');
  }
  // The generated-app tests need Nest apps made by the Nest CLI and installed from the npm registry
  // (minutes on a cold cache): make them here, outside the per-file time limit. A warm cache
  // (~/.cache/nest-etcd-coordination/generated-apps) makes this a no-op; without the registry the tests skip themselves.
  if (files.some((f) => f.includes('generated-apps'))) {
    if ((await run(process.execPath, [path.join('build', 'test', 'support', 'generated-apps.js')])) !== 0) {
      console.log('test: preparing the generated Nest apps failed (see above): the generated-app tests will fail');
    }
  }
}

async function runTests(files, nodeFlags) {
  const concurrency = positiveInt('TEST_CONCURRENCY', DEFAULT_CONCURRENCY);
  const timeout = positiveInt('TEST_TIMEOUT', DEFAULT_TIMEOUT_MS);
  const tmp = mkdtempSync(path.join(os.tmpdir(), 'nest-etcd-test-'));
  const countFile = path.join(tmp, 'counts.txt');
  try {
    const args = [
      '--test',
      `--test-concurrency=${concurrency}`,
      `--test-timeout=${timeout}`,
      '--test-reporter=spec',
      '--test-reporter-destination=stdout',
      `--test-reporter=${path.join(root, 'scripts', 'count-reporter.mjs')}`,
      `--test-reporter-destination=${countFile}`,
      ...nodeFlags,
      ...files.map((f) => path.join('build', f)),
    ];
    // Stack traces should point at the .ts sources; NODE_OPTIONS reaches the per-file processes.
    const nodeOptions = [process.env.NODE_OPTIONS, '--enable-source-maps'].filter(Boolean).join(' ');
    const code = await run(process.execPath, args, { env: { ...process.env, NODE_OPTIONS: nodeOptions } });
    const summary = existsSync(countFile) ? readFileSync(countFile, 'utf8').trim() : '';
    return { code, summary };
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}

async function main() {
  const { nodeFlags, filters, build } = parseArgs(process.argv.slice(2));
  // With a build coming, select from the sources (so we know before building whether etcd is needed);
  // with --no-build, from what is built.
  const files = selectFiles(filters, { fromSources: build });
  await setup(build, files);
  const missing = files.filter((f) => !existsSync(path.join(root, 'build', f)));
  if (missing.length > 0) throw new SetupError(`not built: ${missing.map((f) => `build/${f}`).join(', ')}`);
  const { code, summary } = await runTests(files, nodeFlags);
  const match = /^(\d+) passed, (\d+) failed/.exec(summary);
  if (!match) {
    // The runner died before the reporter could finish: never report that as green.
    console.log(`test: node --test exited with ${code} without a test summary`);
    console.log('0 passed, 1 failed');
    return 1;
  }
  const [passed, failed] = [Number(match[1]), Number(match[2])];
  if (passed + failed === 0) console.log('test: no test ran');
  else if (failed === 0 && code !== 0) console.log(`test: all tests passed but node --test exited with ${code}`);
  console.log(summary);
  return failed > 0 || passed + failed === 0 || code !== 0 ? 1 : 0;
}

main().then(
  (code) => process.exit(code),
  (err) => {
    console.error(`test: ${err instanceof SetupError ? err.message : err.stack}`);
    // Keep the contract that the last line is the summary, even when nothing could run.
    console.log('0 passed, 0 failed');
    process.exit(1);
  },
);
