// The shutdown drain's own logic (lib/shutdown/shutdown-drain.ts) and the shutdownTimeout option.
// Real etcd and processes: test/drain.test.ts.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { Logger } from '@nestjs/common';
import { ShutdownDrain } from '../../lib/shutdown/shutdown-drain.js';
import { resolveCoordinationOptions, type CoordinationModuleOptions } from '../../lib/coordination.options.js';
import { InvalidOptionsError, LockAbortedError, ShutdownError } from '../../lib/errors/coordination.errors.js';

const quiet = new (class extends Logger {
  override log() {}
  override warn() {}
})('test');

function deferred<T = void>() {
  let resolve!: (value: T) => void;
  let reject!: (err: unknown) => void;
  const promise = new Promise<T>((res, rej) => ((resolve = res), (reject = rej)));
  return { promise, resolve, reject };
}

/** A wait that ends only when its signal aborts, like the engine's (LockAbortedError whose cause is the signal's reason). */
function waitUntilAborted(options: { signal?: AbortSignal }): Promise<never> {
  return new Promise((_, reject) => {
    const signal = options.signal!;
    signal.addEventListener('abort', () => reject(new LockAbortedError('x', 'aborted', { cause: signal.reason })), { once: true });
  });
}

describe('ShutdownDrain', () => {
  it('admits everything before the drain; after begin() refuses calls from outside a run, not from inside one', async () => {
    const drain = new ShutdownDrain(1_000, quiet);
    drain.admit('a');
    assert.equal(drain.refuses(), false);
    const inside = deferred();
    let nestedAdmitted: boolean | undefined;
    const run = drain.run(async () => {
      await inside.promise;
      nestedAdmitted = !drain.refuses();
      drain.admit('nested call of a running job');
    });
    drain.begin();
    assert.equal(drain.draining, true);
    assert.throws(() => drain.admit('lock "x"'), (err: unknown) => err instanceof ShutdownError && err.code === 'SHUTTING_DOWN' && /lock "x" refused/.test(err.message));
    inside.resolve();
    await run;
    assert.equal(nestedAdmitted, true);
  });

  it('settle() waits for running runs, resolves "drained" when the last ends, and clears its timer', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const drain = new ShutdownDrain(10_000, quiet);
    const first = deferred();
    const second = deferred();
    void drain.run(() => first.promise);
    const failing = drain.run(() => second.promise);
    assert.equal(drain.running, 2);
    let outcome: string | undefined;
    const settled = drain.settle().then((o) => (outcome = o));
    assert.equal(drain.settle() === drain.settle(), true, 'one promise for every caller');
    t.mock.timers.tick(5_000);
    await Promise.resolve();
    assert.equal(outcome, undefined);
    first.resolve();
    second.reject(new Error('job failed'));
    await assert.rejects(failing, /job failed/); // the caller still sees its own rejection
    await settled;
    assert.equal(outcome, 'drained');
    assert.equal(drain.running, 0);
    t.mock.timers.tick(60_000); // nothing left to fire
  });

  it('settle() resolves "timeout" once timeoutMs have passed with a run still running', async (t) => {
    t.mock.timers.enable({ apis: ['setTimeout'] });
    const drain = new ShutdownDrain(1_000, quiet);
    void drain.run(() => new Promise(() => {}));
    drain.begin();
    let outcome: string | undefined;
    void drain.settle().then((o) => (outcome = o));
    await Promise.resolve();
    t.mock.timers.tick(900);
    await Promise.resolve();
    assert.equal(outcome, undefined);
    t.mock.timers.tick(200);
    await new Promise((resolve) => setImmediate(resolve));
    assert.equal(outcome, 'timeout');
  });

  it('timeoutMs 0 and no runs: settle() resolves at once', async () => {
    assert.equal(await new ShutdownDrain(0, quiet).settle(), 'drained');
    const zero = new ShutdownDrain(0, quiet);
    void zero.run(() => new Promise(() => {}));
    assert.equal(await zero.settle(), 'timeout');
  });

  it('work a run leaves behind (a timer it set) is no longer inside it once the run ended', async () => {
    const drain = new ShutdownDrain(1_000, quiet);
    let fired: Promise<boolean> | undefined;
    await drain.run(async () => {
      fired = new Promise<boolean>((resolve) => setTimeout(() => resolve(drain.refuses()), 20));
    });
    drain.begin();
    assert.equal(await fired, true, 'a timer set by a finished run was admitted during the drain');
  });

  it('synchronous results are not tracked; nested runs count once', async () => {
    const drain = new ShutdownDrain(1_000, quiet);
    assert.equal(drain.run(() => 42), 42);
    assert.equal(drain.running, 0);
    const inner = deferred();
    const outer = drain.run(async () => {
      await drain.run(() => inner.promise);
    });
    assert.equal(drain.running, 1);
    inner.resolve();
    await outer;
    assert.equal(drain.running, 0);
  });

  it('stoppable(): a top-level wait stops with ShutdownError when the drain begins; a nested one and the caller\'s own abort do not become ShutdownError', async () => {
    const drain = new ShutdownDrain(1_000, quiet);
    const top = drain.stoppable('acquire of lock "x"', {}, waitUntilAborted);
    const caller = new AbortController();
    const own = drain.stoppable('acquire of lock "y"', { signal: caller.signal }, waitUntilAborted);
    let nestedSignal: AbortSignal | undefined;
    const nested = drain.run(() => drain.stoppable('nested', { signal: caller.signal }, async (o) => (nestedSignal = o.signal, 'nested ok')));
    caller.abort(new Error('mine'));
    await assert.rejects(own, (err: unknown) => err instanceof LockAbortedError);
    drain.begin();
    await assert.rejects(top, (err: unknown) => err instanceof ShutdownError && /acquire of lock "x" stopped waiting/.test(err.message));
    assert.equal(await nested, 'nested ok');
    assert.equal(nestedSignal, caller.signal, 'a nested call keeps its own options');
    // An error of the call itself is passed through even when the drain has begun.
    await assert.rejects(drain.stoppable('z', {}, async () => { throw new TypeError('boom'); }), TypeError);
    // Options the engine will refuse are passed through unchanged, to get its typed error.
    const odd = { signal: 'not a signal' } as unknown as { signal: AbortSignal };
    assert.equal(await drain.stoppable('w', odd, async (o) => o), odd);
  });
});

describe('shutdownTimeout option', () => {
  const resolve = (options: Record<string, unknown>) => resolveCoordinationOptions(options as CoordinationModuleOptions, {});
  it('defaults to 10000 ms and accepts 0 to 86400000', () => {
    assert.equal(resolve({}).shutdownTimeout, 10_000);
    assert.equal(resolve({ shutdownTimeout: 0 }).shutdownTimeout, 0);
    assert.equal(resolve({ shutdownTimeout: 86_400_000 }).shutdownTimeout, 86_400_000);
  });
  for (const bad of [-1, 1.5, '1000', Number.NaN, 86_400_001, null]) {
    it(`refuses ${typeof bad === "string" ? JSON.stringify(bad) : String(bad)}`, () => {
      assert.throws(() => resolve({ shutdownTimeout: bad }), (err: unknown) => err instanceof InvalidOptionsError && err.option === 'shutdownTimeout' && /integer from 0 to 86400000/.test(err.message));
    });
  }
  it('refuses Infinity, saying why', () => {
    assert.throws(() => resolve({ shutdownTimeout: Infinity }), (err: unknown) => err instanceof InvalidOptionsError && err.option === 'shutdownTimeout' && /finite number of ms/.test(err.message));
  });
});
