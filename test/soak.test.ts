// The soak of `npm run soak` (test/soak/soak.ts), 60 seconds, seeded, in every `npm test`:
// single etcd node, 3 worker processes behind their own fault proxies, the nemesis for 40 s
// (worker kills, freezes shorter and longer than the TTL, blackholed / slow / reset links,
// etcd restarts and crashes), a 20 s quiet phase, then every invariant of the outside observer
// (test/soak/invariants.ts). The fault plan is fixed by the seed; the run's timing is not.
// The JSON result and every worker message go to artifacts/ for a failure's post-mortem.
import assert from 'node:assert/strict';
import { mkdirSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { describe, it } from 'node:test';
import { formatSummary, violations } from './soak/report.js';
import { runSoak } from './soak/soak.js';

// Chosen for the variety of its plan (8 of the 9 single-node kinds in 40 s), not for its outcome.
const SEED = 297;

describe('soak (60 s, seeded nemesis, outside observer)', () => {
  it(`holds every invariant under seed ${SEED}`, { timeout: 115_000 }, async () => {
    const lines: string[] = [];
    const result = await runSoak({ durationMs: 60_000, quietMs: 20_000, seed: SEED, workers: 3, cluster: false, log: (l) => lines.push(l) });
    const dir = path.join(process.cwd(), 'artifacts');
    mkdirSync(dir, { recursive: true });
    const file = path.join(dir, 'soak-test.json');
    writeFileSync(file, `${JSON.stringify(result, null, 2)}\n`);
    writeFileSync(path.join(dir, 'soak-test.events.jsonl'), `${(result.events ?? []).map((e) => JSON.stringify(e)).join('\n')}\n`);
    const summary = `${lines.join('\n')}\n${formatSummary(result)}\n(result: ${file})`;
    const problems = violations(result);
    assert.deepEqual(problems, [], `the soak found ${problems.length} violation(s):\n  ${problems.join('\n  ')}\n\n${summary}`);
    // A soak that did nothing proves nothing.
    assert.ok(result.faults.length >= 5, `only ${result.faults.length} faults ran\n${summary}`);
    assert.ok(Number(result.operations['increments acknowledged']) >= 100, `too few increments\n${summary}`);
    assert.ok(Number(result.operations.leaderships) >= 3, `too few leaderships\n${summary}`);
  });
});
