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
  console.log(JSON.stringify({ format: '${format}', nest: nestVersion, token: String(handle.fencingToken), holderKey: holder.key, invalid, entry, terminus: terminusPresence(), testing }));
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
const terminusPresence = () => { try { require.resolve('@nestjs/terminus'); return 'present'; } catch { return 'absent'; } };
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
const terminusPresence = () => { try { import.meta.resolve('@nestjs/terminus'); return 'present'; } catch { return 'absent'; } };
const testingEntry = import.meta.resolve('nest-etcd-coordination/testing');`,
  'esm',
);

// nest-etcd-coordination/health in a Terminus app: the indicator inside HealthCheckService.check.
const HEALTH_BODY = (load: string, format: string) => `
${load}
class HealthModule {}
Module({
  imports: [CoordinationModule.forRoot({ hosts: process.argv[2], namespace: process.argv[3], election: 'leader', identity: 'compat-health' }), TerminusModule],
  providers: [CoordinationHealthIndicator],
})(HealthModule);
async function main() {
  const app = await NestFactory.createApplicationContext(HealthModule, { logger: false });
  const indicator = app.get(CoordinationHealthIndicator);
  const result = await app.get(HealthCheckService).check([() => indicator.isHealthy('coordination')]);
  await app.close();
  const closed = await indicator.isHealthy('coordination');
  console.log(JSON.stringify({
    format: '${format}', nest: nestVersion, terminus: terminusVersion, entry,
    status: result.status, detail: result.info.coordination, closed: closed.coordination,
  }));
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

const CJS_HEALTH_APP = HEALTH_BODY(
  `require('reflect-metadata');
const { Module } = require('@nestjs/common');
const { NestFactory } = require('@nestjs/core');
const { HealthCheckService, TerminusModule } = require('@nestjs/terminus');
const { CoordinationModule } = require('nest-etcd-coordination');
const { CoordinationHealthIndicator } = require('nest-etcd-coordination/health');
const nestVersion = require('@nestjs/core/package.json').version;
const terminusVersion = require('@nestjs/terminus/package.json').version;
const entry = require.resolve('nest-etcd-coordination/health');`,
  'cjs',
);

const ESM_HEALTH_APP = HEALTH_BODY(
  `import 'reflect-metadata';
import { Module } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { HealthCheckService, TerminusModule } from '@nestjs/terminus';
import { CoordinationModule } from 'nest-etcd-coordination';
import { CoordinationHealthIndicator } from 'nest-etcd-coordination/health';
import { createRequire } from 'node:module';
const nestVersion = createRequire(import.meta.url)('@nestjs/core/package.json').version;
const terminusVersion = createRequire(import.meta.url)('@nestjs/terminus/package.json').version;
const entry = import.meta.resolve('nest-etcd-coordination/health');`,
  'esm',
);

// TypeScript consumers of the health entry's types; the @ts-expect-error fails the check if the types resolve to any.
const TS_HEALTH_CONSUMER = (terminusImport: string) => `
import { CoordinationHealthIndicator, type CoordinationHealthDetails } from 'nest-etcd-coordination/health';
${terminusImport}
export async function ready(indicator: CoordinationHealthIndicator, health: HealthCheckService) {
  const result = await health.check([() => indicator.isHealthy('coordination', { election: 'jobs' })]);
  const own = await indicator.isHealthy('coordination');
  const leaseId: string | undefined = own.coordination.leaseId;
  const details: CoordinationHealthDetails = own.coordination;
  // @ts-expect-error an election name is a string or false
  await indicator.isHealthy('coordination', { election: 42 });
  return [result.status, leaseId, details.session];
}
`;

/** A throwaway project: the package copied in, its runtime dependencies linked from `depsDir`. */
function makeConsumer(depsDir: string, extraDeps: readonly string[] = []): string {
  const dir = mkdtempSync(path.join(tmpdir(), 'nec-consumer-'));
  const modules = path.join(dir, 'node_modules');
  const pkg = path.join(modules, 'nest-etcd-coordination');
  mkdirSync(pkg, { recursive: true });
  cpSync(path.join(REPO, 'package.json'), path.join(pkg, 'package.json'));
  cpSync(path.join(REPO, 'dist'), path.join(pkg, 'dist'), { recursive: true });
  for (const dep of [...RUNTIME_DEPS, ...extraDeps]) {
    const target = path.join(modules, dep);
    mkdirSync(path.dirname(target), { recursive: true });
    // @types/node only for type checks: the repository's.
    symlinkSync(path.join(dep === '@types/node' ? path.join(REPO, 'node_modules') : depsDir, dep), target, 'dir');
  }
  writeFileSync(path.join(dir, 'package.json'), JSON.stringify({ name: 'consumer', private: true }));
  writeFileSync(path.join(dir, 'app.cjs'), CJS_APP);
  writeFileSync(path.join(dir, 'app.mjs'), ESM_APP);
  writeFileSync(path.join(dir, 'health.cjs'), CJS_HEALTH_APP);
  writeFileSync(path.join(dir, 'health.mjs'), ESM_HEALTH_APP);
  writeFileSync(path.join(dir, 'types-esm.mts'), TS_HEALTH_CONSUMER(`import { HealthCheckService } from '@nestjs/terminus';`));
  writeFileSync(path.join(dir, 'types-cjs.cts'), TS_HEALTH_CONSUMER(`import type { HealthCheckService } from '@nestjs/terminus';`));
  writeFileSync(path.join(dir, 'types-node10.ts'), TS_HEALTH_CONSUMER(`import type { HealthCheckService } from '@nestjs/terminus';`));
  return dir;
}

/** Type-checks consumer files with the repository's tsc; rejects with tsc's output on errors. */
async function typecheck(dir: string, files: string[], resolution: 'node16' | 'node10'): Promise<void> {
  const module = resolution === 'node16' ? 'node16' : 'commonjs';
  const tsc = path.join(REPO, 'node_modules', '.bin', 'tsc');
  await run(tsc, ['--noEmit', '--strict', '--experimentalDecorators', '--module', module, '--moduleResolution', resolution, '--types', 'node', ...files], { cwd: dir, timeout: 120_000 })
    .catch((err: { stdout?: string; stderr?: string }) => assert.fail(`tsc (${resolution}) failed:\n${err.stdout ?? ''}${err.stderr ?? ''}`));
}


interface AppResult {
  format: string;
  nest: string;
  token: string;
  holderKey: string;
  invalid: string;
  entry: string;
  terminus: string;
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
    for (const file of [
      'dist/esm/index.js', 'dist/esm/index.d.ts', 'dist/cjs/index.js', 'dist/cjs/package.json', 'dist/esm/package.json',
      'dist/esm/health/index.js', 'dist/esm/health/index.d.ts', 'dist/cjs/health/index.js', 'dist/cjs/health/index.d.ts',
      'dist/esm/testing/index.js', 'dist/esm/testing/index.d.ts', 'dist/cjs/testing/index.js', 'dist/cjs/testing/index.d.ts',
    ]) {
      assert.ok(existsSync(path.join(REPO, file)), `${file} is missing: run "npm run build" first`);
    }
  });
  process.on('exit', () => consumers.forEach((dir) => rmSync(dir, { recursive: true, force: true })));

  // Terminus 11 supports Nest 10 and 11 only; on Nest 12 the devDependency (terminus 12) is used.
  for (const [label, depsDir, major, terminusMajor] of [
    ['Nest 12 (ESM-only)', () => path.join(REPO, 'node_modules'), '12', '12'],
    ['Nest 11 (CommonJS)', () => path.join(NEST11_DIR, 'node_modules'), '11', '11'],
  ] as const) {
    describe(label, () => {
      let dir = '';
      let healthDir = '';
      before(async () => {
        if (major === '11' && !existsSync(path.join(NEST11_DIR, 'node_modules', '@nestjs', 'core'))) {
          mkdirSync(NEST11_DIR, { recursive: true });
          writeFileSync(path.join(NEST11_DIR, 'package.json'), JSON.stringify({ name: 'nest11-compat', private: true }));
          // From the npm registry, like any dependency install.
          await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '@nestjs/common@11', '@nestjs/core@11', 'reflect-metadata@0.2', 'rxjs@7', 'etcd3@1.1.2', 'cockatiel@3'], { cwd: NEST11_DIR, timeout: 240_000 });
        }
        if (major === '11' && !existsSync(path.join(NEST11_DIR, 'node_modules', '@nestjs', 'terminus'))) {
          await run('npm', ['install', '--no-audit', '--no-fund', '--loglevel=error', '@nestjs/terminus@11'], { cwd: NEST11_DIR, timeout: 240_000 });
        }
        dir = makeConsumer(depsDir());
        healthDir = makeConsumer(depsDir(), ['@nestjs/terminus', '@types/node']);
        consumers.push(dir, healthDir);
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
          assert.equal(result.terminus, 'absent', 'the main entry works without the optional @nestjs/terminus');
          // nest-etcd-coordination/testing from the same build, under the main entry's tokens.
          assert.match(result.testing.entry, new RegExp(`dist[/\\\\]${format}[/\\\\]testing[/\\\\]index\\.js$`));
          assert.match(result.testing.token, /^\d+$/);
          assert.equal(result.testing.leaderBefore, true);
          assert.equal(result.testing.leaderAfter, false, 'FakeCoordination.depose() works');
        });
      }

      for (const [file, format] of [['health.cjs', 'cjs'], ['health.mjs', 'esm']] as const) {
        it(`a ${format === 'cjs' ? 'CommonJS' : 'ESM'} Terminus app loads nest-etcd-coordination/health from dist/${format} and checks it`, async () => {
          const result = (await runApp(healthDir, file, etcd().endpoint)) as unknown as {
            format: string; nest: string; terminus: string; entry: string; status: string;
            detail: Record<string, unknown>; closed: Record<string, unknown>;
          };
          assert.equal(result.format, format);
          assert.match(result.nest, new RegExp(`^${major}\\.`));
          assert.match(result.terminus, new RegExp(`^${terminusMajor}\\.`));
          assert.match(result.entry, new RegExp(`dist[/\\\\]${format}[/\\\\]health[/\\\\]index\\.js$`));
          assert.equal(result.status, 'ok');
          assert.equal(result.detail.status, 'up');
          assert.equal(result.detail.session, 'alive');
          assert.match(String(result.detail.leaseId), /^\d+$/);
          // The indicator resolved the same SessionService/ElectionService as the main entry.
          assert.deepEqual(result.detail.election, { name: 'leader', isLeader: true, leader: 'compat-health' });
          assert.equal(result.closed.status, 'down');
          assert.equal(result.closed.session, 'closed');
        });
      }

      it('a TypeScript consumer gets the types of nest-etcd-coordination/health', async () => {
        // Nest 12 is ESM-only: a CommonJS TypeScript consumer (node16 .cts, or node10) needs Nest 11.
        await typecheck(healthDir, major === '11' ? ['types-esm.mts', 'types-cjs.cts'] : ['types-esm.mts'], 'node16');
        if (major === '11') await typecheck(healthDir, ['types-node10.ts'], 'node10');
      });
    });
  }
});
