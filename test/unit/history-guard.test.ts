// The history guard: when a response says etcd's history was reset, and when it does not.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { HistoryGuard } from '../../lib/etcd/history-guard.js';
import { EtcdHistoryResetError } from '../../lib/errors/coordination.errors.js';

const header = (revision: number, cluster = 'c1') => ({ revision: String(revision), cluster_id: cluster });
const hosts = ['h:2379'];

describe('history guard', () => {
  it('accepts growing revisions, and concurrent answers that arrive out of order', () => {
    const guard = new HistoryGuard();
    guard.observe(header(10), guard.begin(), hosts);
    const a = guard.begin();
    const b = guard.begin();
    guard.observe(header(15), b, hosts); // b answered first
    guard.observe(header(12), a, hosts); // a was sent before 15 was seen: not a reset
    guard.observe(header(15), guard.begin(), hosts);
  });

  it('a revision below the one seen before the request was sent is a reset, reported once', () => {
    const guard = new HistoryGuard();
    const seen: EtcdHistoryResetError[] = [];
    guard.onReset((err) => seen.push(err));
    guard.observe(header(600), guard.begin(), hosts);
    const inFlight = guard.begin();
    assert.throws(() => guard.observe(header(4), guard.begin(), hosts), (err: unknown) => err instanceof EtcdHistoryResetError && err.code === 'ETCD_HISTORY_RESET' && /revision 4 after 600/.test(err.message));
    guard.observe(header(5), inFlight, hosts); // sent before the reset was noticed: not reported again
    guard.observe(header(6), guard.begin(), hosts); // the new history is adopted
    assert.equal(seen.length, 1);
    assert.equal(seen[0]!.detail.previousRevision, 600n);
  });

  it('a changed cluster id is a reset even when the revision is higher', () => {
    const guard = new HistoryGuard();
    guard.observe(header(10, 'c1'), guard.begin(), hosts);
    assert.throws(() => guard.observe(header(50, 'c2'), guard.begin(), hosts), /cluster id changed from c1 to c2/);
  });
});
