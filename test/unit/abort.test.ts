import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import assert from 'node:assert/strict';
import { getEventListeners } from 'node:events';
import { backoffDelay, operationSignal, raceSignal, sleep } from '../../lib/util/abort.js';

const listeners = (signal: AbortSignal) => getEventListeners(signal, 'abort').length;
/** Lets pending promise callbacks run (mock timers do not advance microtasks). */
const flush = () => new Promise<void>((resolve) => setImmediate(resolve));

describe('operationSignal', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('aborts with cause "timeout" when the timeout passes first, not before', () => {
    const op = operationSignal({ timeoutMs: 1_000 });
    mock.timers.tick(999);
    assert.equal(op.signal.aborted, false);
    assert.equal(op.cause(), undefined);
    mock.timers.tick(1);
    assert.equal(op.signal.aborted, true);
    assert.equal(op.cause(), 'timeout');
    op.dispose();
  });

  it('follows the caller and internal signals, remembering which aborted first', () => {
    const caller = new AbortController();
    const session = new AbortController();
    const op = operationSignal({ timeoutMs: 1_000, caller: caller.signal, others: [session.signal] });
    const reason = new Error('caller gave up');
    caller.abort(reason);
    session.abort(new Error('session lost'));
    mock.timers.tick(2_000);
    assert.equal(op.cause(), 'caller');
    assert.equal(op.signal.reason, reason);
    op.dispose();

    const other = new AbortController();
    const op2 = operationSignal({ caller: new AbortController().signal, others: [other.signal] });
    other.abort('shutdown');
    assert.equal(op2.cause(), 'other');
    assert.equal(op2.signal.reason, 'shutdown');
    op2.dispose();
  });

  it('is aborted at once by an input that is already aborted (and then sets no timer)', () => {
    const op = operationSignal({ timeoutMs: 10, caller: AbortSignal.abort('early') });
    assert.equal(op.signal.aborted, true);
    assert.equal(op.cause(), 'caller');
    assert.equal(op.signal.reason, 'early');
    mock.timers.tick(100);
    assert.equal(op.cause(), 'caller');
    op.dispose();
  });

  it('dispose removes every listener from the inputs and clears the timer', () => {
    const caller = new AbortController();
    const others = [new AbortController(), new AbortController()];
    const op = operationSignal({ timeoutMs: 1_000, caller: caller.signal, others: others.map((c) => c.signal) });
    assert.equal(listeners(caller.signal), 1);
    for (const c of others) assert.equal(listeners(c.signal), 1);
    op.dispose();
    assert.equal(listeners(caller.signal), 0);
    for (const c of others) assert.equal(listeners(c.signal), 0);
    mock.timers.tick(5_000);
    assert.equal(op.signal.aborted, false, 'the timer must be cleared by dispose');
    caller.abort();
    assert.equal(op.signal.aborted, false, 'a disposed signal no longer follows its inputs');
    op.dispose(); // idempotent
  });

  it('many operations on one long-lived signal leave no listener behind', () => {
    const shutdown = new AbortController();
    for (let i = 0; i < 100; i++) operationSignal({ timeoutMs: 1_000, others: [shutdown.signal] }).dispose();
    assert.equal(listeners(shutdown.signal), 0);
  });
});

describe('sleep', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout'] }));
  afterEach(() => mock.timers.reset());

  it('resolves after ms and removes its abort listener', async () => {
    const controller = new AbortController();
    let done = false;
    const slept = sleep(500, controller.signal).then(() => (done = true));
    assert.equal(listeners(controller.signal), 1);
    mock.timers.tick(499);
    await flush();
    assert.equal(done, false);
    mock.timers.tick(1);
    await slept;
    assert.equal(done, true);
    assert.equal(listeners(controller.signal), 0);
  });

  it('rejects with the signal reason when aborted first, or at once if already aborted', async () => {
    const controller = new AbortController();
    const slept = sleep(10_000, controller.signal);
    const reason = new Error('stop');
    controller.abort(reason);
    await assert.rejects(slept, (err) => err === reason);
    await assert.rejects(sleep(1, AbortSignal.abort('already')), (err) => err === 'already');
  });
});

describe('raceSignal', () => {
  it('settles like the promise, and removes its listener', async () => {
    const controller = new AbortController();
    assert.equal(await raceSignal(Promise.resolve(42), controller.signal), 42);
    await assert.rejects(raceSignal(Promise.reject(new Error('boom')), controller.signal), /boom/);
    assert.equal(listeners(controller.signal), 0);
  });

  it('rejects with the reason when the signal aborts first, or at once if already aborted', async () => {
    const controller = new AbortController();
    const raced = raceSignal(new Promise(() => {}), controller.signal);
    controller.abort('cancelled');
    await assert.rejects(raced, (err) => err === 'cancelled');
    await assert.rejects(raceSignal(Promise.resolve(1), AbortSignal.abort('pre')), (err) => err === 'pre');
  });
});

describe('backoffDelay', () => {
  it('stays within [ceiling/2, ceiling] of the capped exponential, whatever Math.random returns', () => {
    for (const random of [0, 0.5, 0.999999]) {
      const restore = mock.method(Math, 'random', () => random);
      try {
        for (let attempt = 0; attempt < 40; attempt++) {
          const ceiling = Math.min(5_000, 100 * 2 ** Math.min(attempt, 16));
          const delay = backoffDelay(attempt);
          assert.ok(delay >= ceiling / 2 && delay <= ceiling, `attempt ${attempt}, random ${random}: ${delay} not in [${ceiling / 2}, ${ceiling}]`);
        }
      } finally {
        restore.mock.restore();
      }
    }
  });

  it('grows with the attempt until the cap, honouring custom base and cap', () => {
    const restore = mock.method(Math, 'random', () => 1);
    try {
      assert.equal(backoffDelay(0), 100);
      assert.equal(backoffDelay(1), 200);
      assert.equal(backoffDelay(5), 3_200);
      assert.equal(backoffDelay(6), 5_000);
      assert.equal(backoffDelay(1_000), 5_000);
      assert.equal(backoffDelay(3, 10, 50), 50);
      assert.equal(backoffDelay(2, 10, 50), 40);
    } finally {
      restore.mock.restore();
    }
  });
});
