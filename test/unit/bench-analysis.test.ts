// The benchmark's own arithmetic (bench/sections/contended-analysis.ts, bench/profile-summary.ts):
// a wrong split or a wrong attribution would put wrong figures in docs/bench.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { analyse, type Hold, type RawPhase } from '../../bench/sections/contended-analysis.js';
import { originOf, summarizeProfile, type CpuProfile } from '../../bench/profile-summary.js';

const ms = (v: number) => BigInt(Math.round(v * 1e6));

function hold(worker: number, acquired: number, releaseStart: number, extra: Partial<Hold> = {}): Hold {
  return { worker, acquired: ms(acquired), releaseStart: ms(releaseStart), releaseDone: ms(releaseStart + 1), token: undefined, attempts: 1, woke: undefined, ...extra };
}

function phase(holds: Hold[], extra: Partial<RawPhase> = {}): RawPhase {
  return {
    impl: 'ours', holds, windowStart: ms(0), windowEnd: ms(1000), workers: 2, unaryTotal: holds.length * 3, unary: { Txn: holds.length * 3 },
    watchStreamsOpened: 0, failed: 0, disconnects: 0, probeMs: [1], workerCpuMs: 0, eventLoopDelay: [], ...extra,
  };
}

describe('contended analysis', () => {
  it('merges holds of all processes by acquisition time and measures release start -> next acquisition', () => {
    // Out of order on purpose: the analysis must sort.
    const r = analyse([phase([hold(1, 10, 11, { token: 2n }), hold(0, 0, 1, { token: 1n }), hold(0, 14, 15, { token: 3n })])]);
    assert.equal(r.acquisitions, 3);
    assert.deepEqual(r.perWorker, [2, 1]);
    assert.equal(r.handoff.n, 2);
    assert.equal(r.handoff.min, 3); // 11 -> 14
    assert.equal(r.handoff.max, 9); // 1 -> 10
    assert.equal(r.mutualExclusionViolations, 0);
    assert.equal(r.fencingOrderViolations, 0);
  });

  it('counts a hold that began before its predecessor released, and a fencing token that did not grow', () => {
    const r = analyse([phase([hold(0, 0, 5, { token: 5n }), hold(1, 3, 6, { token: 4n })])]);
    assert.equal(r.mutualExclusionViolations, 1);
    assert.equal(r.fencingOrderViolations, 1);
  });

  it('splits a handoff at the wake-up only when the wake-up lies between the release and the acquisition', () => {
    const r = analyse([phase([
      hold(0, 0, 1),
      hold(1, 10, 11, { woke: ms(7) }), // 1 -> 7 -> 10: split 6 + 3
      hold(0, 20, 21, { woke: ms(5) }), // woke before the release of the previous hold (11): not this handoff's
    ])]);
    assert.equal(r.handoffParts?.releaseToWake.n, 1);
    assert.equal(r.handoffParts?.releaseToWake.p50, 6);
    assert.equal(r.handoffParts?.wakeToAcquired.p50, 3);
  });

  it('leaves holds outside the window out of throughput and handoffs, but still checks them for safety', () => {
    const r = analyse([phase([hold(0, -5, 2), hold(1, 1, 3)], { windowStart: ms(0), windowEnd: ms(1000) })]);
    assert.equal(r.acquisitions, 1);
    assert.equal(r.handoff.n, 1);
    assert.equal(r.mutualExclusionViolations, 1);
  });
});

describe('profile summary', () => {
  const frame = (functionName: string, url = '') => ({ functionName, url, lineNumber: 0 });

  it('attributes files to their origin', () => {
    assert.equal(originOf(frame('claimKey', 'file:///x/.cache/bench-build/lib/etcd/etcd-ops.js')), 'ours (lib/)');
    assert.equal(originOf(frame('f', 'file:///x/node_modules/@grpc/grpc-js/build/src/client.js')), 'grpc-js');
    assert.equal(originOf(frame('f', 'file:///x/node_modules/etcd3/lib/rpc.js')), 'etcd3');
    assert.equal(originOf(frame('f', 'file:///x/node_modules/protobufjs/src/writer.js')), 'protobufjs');
    assert.equal(originOf(frame('emit', 'node:events')), 'node core');
    assert.equal(originOf(frame('(garbage collector)')), 'gc');
    assert.equal(originOf(frame('(idle)')), 'idle');
  });

  it('charges each interval to the sample it follows and reports us per cycle', () => {
    const profile: CpuProfile = {
      nodes: [
        { id: 1, callFrame: frame('(root)') },
        { id: 2, callFrame: frame('claimKey', 'file:///x/lib/etcd/etcd-ops.js') },
        { id: 3, callFrame: frame('(idle)') },
      ],
      samples: [2, 2, 3, 2],
      // The first delta precedes the first sample; the rest follow samples 0, 1 and 2.
      timeDeltas: [0, 100, 300, 50],
      startTime: 0,
      endTime: 450,
    };
    const s = summarizeProfile(profile, 2);
    assert.equal(s.busyMs, 0.4); // 100 + 300 us after the two claimKey samples; the last sample has no interval
    const ours = s.byOrigin.find((o) => o.origin === 'ours (lib/)')!;
    assert.equal(ours.usPerCycle, 200);
    assert.equal(s.topOurs[0]?.function, 'claimKey');
    assert.equal(s.byOrigin.find((o) => o.origin === 'idle')?.selfMs, 0.1); // 50 us, rounded to 0.1 ms
  });
});
