// The sample app's dashboard in headless Chromium (Debian's chromium package, driven by
// playwright-core): three real instances, the page shows the leader; the leader is killed
// and the page shows the new one and the handover. Screenshots go to artifacts/ (git-ignored).
//
// Chromium is not optional here: without it this test fails, saying how to get it
// (scripts/ensure-chromium.sh installs it when run as root on Debian).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdirSync } from 'node:fs';
import path from 'node:path';
import { after, before, describe, it } from 'node:test';
import { chromium, type Browser, type Page } from 'playwright-core';
import { etcdFixture } from './harness/etcd.js';
import { repositoryRoot, startSampleCluster, type SampleCluster } from './fixtures/sample-cluster.js';

const CHROMIUM = process.env.CHROMIUM_BIN || '/usr/bin/chromium';
const CHROMIUM_ARGS = [
  '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
  '--disable-background-networking', '--disable-component-update', '--disable-sync',
];
const SESSION_TTL = 3;

/** Runs scripts/ensure-chromium.sh; throws its message when Chromium cannot be had. */
function ensureChromium(root: string): void {
  const result = spawnSync('bash', [path.join(root, 'scripts', 'ensure-chromium.sh')], { encoding: 'utf8', timeout: 15 * 60_000 });
  if (result.status !== 0) {
    throw new Error(`headless Chromium is required for this test and is not available:\n${result.stderr || result.stdout || result.error?.message}`);
  }
}

/** The leader's name as the page shows it. */
function shownLeader(page: Page): Promise<string> {
  return page.locator('#leader-name').innerText();
}

describe('sample-app dashboard (headless Chromium)', () => {
  const etcd = etcdFixture();
  const root = repositoryRoot();
  const artifacts = path.join(root, 'artifacts');
  let cluster: SampleCluster | undefined;
  let browser: Browser | undefined;
  const pageErrors: string[] = [];

  before(async () => {
    ensureChromium(root);
    mkdirSync(artifacts, { recursive: true });
    browser = await chromium.launch({ executablePath: CHROMIUM, args: CHROMIUM_ARGS, timeout: 60_000 });
    cluster = await startSampleCluster({ etcdEndpoint: etcd().endpoint, size: 3, sessionTtl: SESSION_TTL });
  }, { timeout: 20 * 60_000 });

  after(async () => {
    await browser?.close();
    await cluster?.stop();
  });

  it('shows the leader, and after the leader is killed the new leader and the handover', { timeout: 120_000 }, async () => {
    const leader = await cluster!.waitForLeader();
    // Watch from an instance that survives: the page must not depend on the one that dies.
    const viewer = cluster!.instances.find((i) => i.id !== leader.id)!;
    const page = await browser!.newPage({ viewport: { width: 1400, height: 1000 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    await page.goto(`${viewer.url}/`);

    await page.waitForFunction((id) => document.querySelector('#leader-name')?.textContent === id, leader.id, { timeout: 20_000 });
    assert.equal(await shownLeader(page), leader.id);
    for (const instance of cluster!.instances) {
      const role = instance.id === leader.id ? 'leader' : 'follower';
      await page.waitForSelector(`tr[data-instance="${instance.id}"][data-role="${role}"]`, { timeout: 20_000 });
    }
    // Let a few job runs reach the timeline before the first picture.
    await page.waitForFunction(() => document.querySelectorAll('#timeline rect').length > 12, undefined, { timeout: 20_000 });
    await page.screenshot({ path: path.join(artifacts, 'dashboard-before-failover.png'), fullPage: true });

    await leader.process.kill('SIGKILL');
    const next = await cluster!.waitForLeader({ not: leader.id, timeoutMs: SESSION_TTL * 1_000 + 30_000 });

    await page.waitForFunction((id) => document.querySelector('#leader-name')?.textContent === id, next.id, { timeout: 20_000 });
    assert.equal(await shownLeader(page), next.id);
    await page.waitForSelector(`tr[data-instance="${leader.id}"][data-role="down"]`, { timeout: 20_000 });
    await page.waitForSelector(`tr[data-instance="${next.id}"][data-role="leader"]`, { timeout: 20_000 });
    // The handover list names both sides once the new leader's term is in etcd.
    await page.waitForFunction(
      ([from, to]) => Array.from(document.querySelectorAll('#handovers li')).some((li) => li.textContent?.includes(`${from} was lost → ${to} leads`)),
      [leader.id, next.id] as const,
      { timeout: 20_000 },
    );
    // Let the new leader's first job runs show up, then take the picture the README can use.
    await page.waitForTimeout(2_500);
    await page.screenshot({ path: path.join(artifacts, 'dashboard.png'), fullPage: true });
    assert.deepEqual(pageErrors, [], 'the dashboard script threw');
  });
});
