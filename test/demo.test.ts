// `npm run demo -- --short`: the scripted failover demo of the sample app, end to end. It starts
// its own throwaway etcd and three instances, pauses a lock holder, SIGTERMs the leader,
// SIGKILLs the next one, and checks from etcd that leadership and leader-only jobs never
// overlapped. Here we run it against this build (no rebuild: other test files use build/)
// and assert that it passed and that its checks really ran.
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, describe, it } from 'node:test';
import { BUILD_ROOT } from './harness/processes.js';
import { repositoryRoot } from './fixtures/sample-cluster.js';

interface DemoReport {
  ok: boolean;
  failure: string | null;
  checks: Array<{ name: string; ok: boolean; detail?: string }>;
  instances: string[];
  terms: Array<{ instance: string; fencingToken: string; from: number; end: number; open: boolean }>;
  handovers: Array<{ kind: 'handover' | 'SIGTERM' | 'SIGKILL'; from: string; to: string }>;
  leaderOnlyRuns: number;
  refusedWrites: number;
}

function runDemo(args: string[], env: NodeJS.ProcessEnv): Promise<{ code: number | null; signal: NodeJS.Signals | null; output: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(repositoryRoot(), 'scripts', 'demo.mjs'), ...args], {
      cwd: repositoryRoot(),
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (d: Buffer) => (output += d));
    child.stderr.on('data', (d: Buffer) => (output += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, output }));
  });
}

describe('npm run demo -- --short', () => {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'demo-test-'));
  after(() => rmSync(dir, { recursive: true, force: true }));

  it('fails the leader over twice, refuses a stale write, and passes its checks', { timeout: 180_000 }, async () => {
    const reportFile = path.join(dir, 'report.json');
    const env: NodeJS.ProcessEnv = { ...process.env, DEMO_BUILD_DIR: BUILD_ROOT, NO_COLOR: '1' };
    // The demo must start its own etcd, in its own namespace.
    delete env.ETCD_HOSTS;
    delete env.COORD_NAMESPACE;
    delete env.NODE_TEST_CONTEXT;
    const { code, signal, output } = await runDemo(['--short', '--no-build', '--report-json', reportFile], env);
    const tail = output.split('\n').slice(-60).join('\n');
    assert.equal(code, 0, `demo exited with ${code ?? signal}:\n${tail}`);

    const report = JSON.parse(readFileSync(reportFile, 'utf8')) as DemoReport;
    assert.equal(report.ok, true, tail);
    const names = report.checks.map((c) => c.name);
    for (const expected of [
      'never two leaders at once',
      'no two instances ever ran a leader-only job at the same time',
      'every instance that thought it led held the oldest candidate key in etcd',
      "a paused lock holder's stale write was refused by the fenced store",
      'no tenant shard was ever run by two instances at once',
      'every tenant shard owned again after SIGTERM',
      'every tenant shard owned again after SIGKILL',
      'the hand-over from ',
    ]) {
      assert.ok(names.some((n) => n.startsWith(expected)), `check "${expected}" did not run; checks: ${names.join(' | ')}`);
    }
    assert.deepEqual(report.checks.filter((c) => !c.ok), []);
    assert.deepEqual(report.handovers.map((h) => h.kind), ['handover', 'SIGTERM', 'SIGKILL']);
    assert.ok(report.terms.length >= 3, `expected at least 3 leadership terms, got ${report.terms.length}`);
    assert.ok(report.leaderOnlyRuns > 0 && report.refusedWrites >= 1, JSON.stringify(report));
    // The printed timeline is there for people: spot-check it.
    assert.match(output, /Who led when/);
    assert.match(output, /SIGKILL app-\d .* led [\d.]+ s after the signal/);
    assert.match(output, /demo passed: \d+ checks/);
  });
});
