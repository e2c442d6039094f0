// The published package (dist/ + package.json "exports") loaded the way users load it:
// by a CommonJS app (require) and an ESM app (import), on Nest 12 (ESM-only) and Nest 11 (CJS).
// Each consumer gets its own node_modules with a COPY of the package, so the library resolves
// the same @nestjs/* as the app (a symlink would make it resolve this repository's Nest 12).
import { before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cpSync, existsSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { promisify } from 'node:util';
import { etcdFixture } from './harness/etcd.js';
import { BUILD_ROOT } from './harness/processes.js';
import { uniqueNamespace } from './support/apps.js';

const run = promisify(execFile);
// The repository root (build/ sits in it); overridable for out-of-tree builds.
const REPO = process.env.REPO_ROOT ?? path.resolve(BUILD_ROOT, '..');
const NEST11_DIR = path.join(REPO, '.cache', 'nest11');
const RUNTIME_DEPS = ['@nestjs/common', '@nestjs/core', 'reflect-metadata', 'rxjs', 'etcd3', 'cockatiel'];

const APP_BODY = (load: string, format: string) => `
${load}
class AppModule {}
Module({ imports: [CoordinationModule.forRoot({ hosts: process.argv[2], namespace: process.argv[3], election: false })] })(AppModule);
async function main() {
  const app = await NestFactory.createApplicationContext(AppModule, { logger: false });
  const locks = app.get(LockService);
  const handle = await locks.acquire('compat');
  const holder = await locks.holder('compat');
  await handle.release();
  await app.close();
  let invalid = '';
  try { CoordinationModule.forRootAsync({}); } catch (err) { invalid = err instanceof CoordinationError ? err.code : 'wrong type'; }
  // The testing kit: the in-memory stand-in under the main entry's tokens.
  class FakeModule {}
  Module({ imports: [CoordinationTestingModule.forRoot({ identity: 'consumer' })] })(FakeModule);
  const fakeApp = await NestFactory.createApplicationContext(FakeModule, { logger: false });
  const fakeHold = await fakeApp.get(LockService).acquire('compat');
  const leaderBefore = fakeApp.get(ElectionService).isLeader();
  await fakeApp.get(FakeCoordination).depose();
  const testing = { token: String(fakeHold.fencingToken), leaderBefore, leaderAfter: fakeApp.get(ElectionService).isLeader(), entry: testingEntry };
  await fakeHold.release();
  await fakeApp.close();
  console.log(JSON.stringify({ format: '${format}', nest: nestVersion, token: String(handle.fencingToken), holderKey: holder.key, invalid, entry, testing }));
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

const CJS_APP = APP_BODY(
  `require('reflect-metadata');
const { Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { CoordinationModule, LockService, ElectionService, CoordinationError } = require('nest-etcd-coordination');
const { CoordinationTestingModule, FakeCoordination } = require('nest-etcd-coordination/testing');
const nestVersion = require('@nestjs/core/package.json').version;
const entry = require.resolve('nest-etcd-coordination');
const testingEntry = require.resolve('nest-etcd-coordination/testing');`,
  'cjs',
);

const ESM_APP = APP_BODY(
  `import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { CoordinationModule, LockService, ElectionService, CoordinationError } from 'nest-etcd-coordination';
import { CoordinationTestingModule, FakeCoordination } from 'nest-etcd-coordination/testing';
import { createRequire } from 'node:module';
const nestVersion = createRequire(import.meta.url)('@nestjs/core/package.json').version;
const entry = import.meta.resolve('nest-etcd-coordination');
const testingEntry = import.meta.resolve('nest-etcd-coordination/testing');`,
  'esm',
);

/** A throwaway project: the package copied in, its runtime dependencies linked from `depsDir`. */
function makeConsumer(depsDir: string): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nec-consumer-'));
  const modules = path.join(dir, 'node_modules');
  const pkg = path.join(modules, 'nest-etcd-coordination');
  mkdirSync(pkg, { recursive: true });
  cpSync(path.join(REPO, 'package.json'), path.join(pkg, 'package.json'));
  cpSync(path.join(REPO, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  for (const dep of RUNTIME_DEPS) {
    const target = path.join(modules, dep);
    mkdirSync(path.dirname(target), { recursive: true });
    symlinkSync(path.join(depsDir, dep), target, 'dir');
  }
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  writeFileSync(path.join(dir, 'app.cjs'), CJS_APP);
  writeFileSync(path.join(dir, 'app.mjs'), ESM_APP);
  return dir;
}

interface AppResult {
  format: string;
  nest: string;
  token: string;
  holderKey: string;
  invalid: string;
  entry: string;
  testing: { token: string; leaderBefore: boolean; leaderAfter: boolean; entry: string };
}

async function runApp(dir: string, file: string, endpoint: string): Promise<AppResult> {
  const { stdout } = await run(process.execPath, [path.join(dir, file), endpoint, uniqueNamespace('compat')], { cwd: dir, timeout: 60_000 });
  return JSON.parse(stdout.trim().split('\n').at(-1)!);
}

describe('the built package in ESM and CommonJS Nest apps', () => {
  const etcd = etcdFixture();
  const consumers: string[] = [];
  before(() => {
    for (const file of ['dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/package.json', 'dist/esm/package.json',
      'dist/esm/testing/index.js', 'dist/esm/testing/index.d.ts', 'dist/cjs/testing/index.js', 'dist/cjs/testing/index.d.ts']) {
      assert.ok(existsSync(path.join(REPO, file)), `${file} is missing: run "npm run build" first`);
    }
  });
  process.on('exit', () => consumers.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  for (const [label, depsDir, major] of [
    ['Nest 12 (ESM-only)', () => path.join(REPO, 'node_modules'), '12'],
    ['Nest 11 (CommonJS)', () => path.join(NEST11_DIR, 'node_modules'), '11'],
  ] as const) {
    describe(label, () => {
      let dir = '';
      before(async () => {
        if (major === '11' && !existsSync(path.join(NEST11_DIR, 'node_modules', '@nestjs', 'core'))) {
          mkdirSync(NEST11_DIR, { recursive: true });
          writeFileSync(path.join(NEST11_DIR, 'package.json'), JSON.stringify({ name: 'nest11-compat', private: true }));
          // From the npm registry, like any dependency install.
          await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '@nestjs/common@11', '@nestjs/core@11', 'reflect-metadata@0.2', 'rxjs@7', 'etcd3@1.1.2', 'cockatiel@3'], { cwd: NEST11_DIR, timeout: 240_000 });
        }
        dir = makeConsumer(depsDir());
        consumers.push(dir);
      });

      for (const [file, format] of [['app.cjs', 'cjs'], ['app.mjs', 'esm']] as const) {
        it(`a ${format === 'cjs' ? 'CommonJS (require)' : 'ESM (import)'} app loads the ${format === 'cjs' ? 'dist/cjs' : 'dist/esm'} build and takes a lock`, async () => {
          const result = await runApp(dir, file, etcd().endpoint);
          assert.equal(result.format, format);
          assert.match(result.nest!, new RegExp(`^${major}\\.`));
          assert.match(result.entry!, new RegExp(`dist[/\\\\]${format}[/\\\\]index\\.js$`));
          assert.match(result.token!, /^\d+$/);
          assert.match(result.holderKey!, /compat\/[0-9a-f]+$/);
          assert.equal(result.invalid, 'INVALID_OPTIONS', 'typed errors are exported');
          // nest-etcd-coordination/testing from the same build, under the main entry's tokens.
          assert.match(result.testing.entry, new RegExp(`dist[/\\\\]${format}[/\\\\]testing[/\\\\]index\\.js$`));
          assert.match(result.testing.token, /^\d+$/);
          assert.equal(result.testing.leaderBefore, true);
          assert.equal(result.testing.leaderAfter, false, 'FakeCoordination.depose() works');
        });
      }
    });
  }
});
