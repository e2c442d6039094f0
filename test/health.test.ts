// The Terminus health indicator (nest-etcd-coordination/health) against real etcd: details while
// up, down while connecting / lost / closed, recovery after an etcd outage longer than the TTL,
// inside a real HealthCheckService.check and a real HTTP readiness endpoint, and a clean shutdown.
import 'reflect-metadata';
import { after, afterEach, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { createHook } from 'node:async_hooks';
import { performance } from 'node:perf_hooks';
import { Controller, Get, Module, ServiceUnavailableException, type INestApplication, type INestApplicationContext, type Type } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { Test } from '@nestjs/testing';
import { HealthCheck, HealthCheckService, TerminusModule, type HealthCheckResult } from '@nestjs/terminus';
import { CoordinationModule, ElectionService, SessionService, type CoordinationModuleOptions, type SessionState } from '../lib/index.js';
import { CoordinationHealthIndicator, type CoordinationHealthDetails, type CoordinationHealthOptions } from '../lib/health/index.js';
import { HealthMessages } from '../lib/coordination.messages.js';
import { etcdFixture, startEtcd, type EtcdServer } from './harness/etcd.js';
import { closeApps, createApp, delay, eventually, leaseIds, rawClient, uniqueNamespace } from './support/apps.js';

const KEY = 'coordination';

type Detail = CoordinationHealthDetails & { status: 'up' | 'down' };

/** A health check result's entry for our key. */
function detailOf(result: Record<string, unknown>): Detail {
  return (result as Record<string, Detail>)[KEY]!;
}

/** Terminus providers next to the indicator, as a user wires them (logger off: down is expected here). */
const TERMINUS = TerminusModule.forRoot({ logger: false });

async function healthApp(options: CoordinationModuleOptions): Promise<INestApplicationContext> {
  return createApp({ ...options, imports: [TERMINUS], providers: [CoordinationHealthIndicator] });
}

@Controller('health')
class HealthController {
  constructor(
    private readonly health: HealthCheckService,
    private readonly coordination: CoordinationHealthIndicator,
  ) {}

  @Get('ready')
  @HealthCheck()
  ready(): Promise<HealthCheckResult> {
    return this.health.check([() => this.coordination.isHealthy(KEY)]);
  }
}

/** A real HTTP app with a readiness endpoint, as the README shows it. */
async function httpApp(options: CoordinationModuleOptions): Promise<{ app: INestApplication; url: string }> {
  class HealthModule {}
  Module({ imports: [TERMINUS], controllers: [HealthController], providers: [CoordinationHealthIndicator] })(HealthModule);
  class AppModule {}
  Module({ imports: [CoordinationModule.forRoot({ election: false, ...options }), HealthModule] })(AppModule);
  const app = await NestFactory.create(AppModule as Type, { logger: ['error'], abortOnError: false });
  await app.listen(0, '127.0.0.1');
  const address = app.getHttpServer().address() as { port: number };
  return { app, url: `http://127.0.0.1:${address.port}/health/ready` };
}

/** Wraps the real SessionService.session to count the requests for a session and their overlap. */
function countSessionRequests(sessions: SessionService): { calls: number; inFlight: number; maxInFlight: number } {
  const counts = { calls: 0, inFlight: 0, maxInFlight: 0 };
  const original = sessions.session.bind(sessions);
  sessions.session = (...args: Parameters<SessionService['session']>) => {
    counts.calls++;
    counts.maxInFlight = Math.max(counts.maxInFlight, ++counts.inFlight);
    return original(...args).finally(() => counts.inFlight--);
  };
  return counts;
}

/**
 * Records the timers and sockets created from now on, with the stack that created them, until
 * they are gone; `live()` lists those still there.
 */
function trackTimersAndSockets() {
  const live = new Map<number, { type: string; stack: string }>();
  const hook = createHook({
    init(id, type) {
      if (type === 'Timeout' || type === 'TCPWRAP') live.set(id, { type, stack: new Error().stack ?? '' });
    },
    destroy(id) {
      live.delete(id);
    },
  }).enable();
  return { live: () => [...live.values()], stop: () => hook.disable() };
}

/** Counts of the process's active resources by kind (timers, sockets, ...). */
function activeResources(): Map<string, number> {
  const counts = new Map<string, number>();
  for (const kind of process.getActiveResourcesInfo()) counts.set(kind, (counts.get(kind) ?? 0) + 1);
  return counts;
}

describe('CoordinationHealthIndicator (real etcd)', () => {
  const etcd = etcdFixture();
  afterEach(closeApps);

  // First, so that what earlier tests left behind cannot hide what this one leaves.
  it('closed after app.close(): down, nothing re-created, nothing left running', async () => {
    const ns = uniqueNamespace('health-close');
    const client = rawClient(etcd().endpoint);
    try {
      await leaseIds(client); // its connection is open before the snapshot
      const resourcesBefore = activeResources();
      const app = await healthApp({ hosts: etcd().endpoint, namespace: ns, election: 'leader' });
      const indicator = app.get(CoordinationHealthIndicator);
      const sessions = app.get(SessionService);
      // Exercise every subscription the indicator can own: the default and a named election.
      assert.equal(detailOf(await indicator.isHealthy(KEY)).status, 'up');
      assert.equal(detailOf(await indicator.isHealthy(KEY, { election: 'other' })).election?.leader, null);
      const leaseId = sessions.state.leaseId!.toString();
      await app.close();

      const closed = detailOf(await indicator.isHealthy(KEY, { election: 'other' }));
      assert.equal(closed.status, 'down');
      assert.equal(closed.session, 'closed');
      assert.equal(closed.message, HealthMessages.closed());
      assert.equal(closed.leaseId, leaseId, 'the last lease is still reported');
      await delay(300);
      const leases = await leaseIds(client);
      assert.ok(!leases.includes(leaseId), 'the session lease was revoked');
      assert.equal(sessions.state.status, 'closed', 'a check after close must not create a session');
      // Timers and sockets of ours are gone (etcd3/grpc close asynchronously: allow a moment).
      const extra = () => [...activeResources()].filter(([kind, n]) => n > (resourcesBefore.get(kind) ?? 0));
      for (const deadline = Date.now() + 3_000; extra().length > 0 && Date.now() < deadline; ) await delay(50);
      assert.deepEqual(extra(), [], `resources left after close (before: ${JSON.stringify([...resourcesBefore])})`);
    } finally {
      client.close();
    }
  });

  it('is up after bootstrap with the session and default election as details', async () => {
    const ns = uniqueNamespace('health-up');
    const ttl = 4;
    const a = await healthApp({ hosts: etcd().endpoint, namespace: ns, identity: 'node-a', sessionTtl: ttl, election: 'leader' });
    const b = await healthApp({ hosts: etcd().endpoint, namespace: ns, identity: 'node-b', sessionTtl: ttl, election: 'leader' });
    const stateA = a.get(SessionService).state;
    const started = Date.now();
    const upA = detailOf(await a.get(CoordinationHealthIndicator).isHealthy(KEY));
    const upB = detailOf(await b.get(CoordinationHealthIndicator).isHealthy(KEY));

    assert.equal(upA.status, 'up');
    assert.equal(upA.session, 'alive');
    assert.equal(upA.message, undefined, 'no down reason while up');
    assert.match(upA.leaseId!, /^\d+$/);
    assert.equal(upA.leaseId, stateA.leaseId!.toString());
    assert.equal(upA.leaseHex, BigInt(upA.leaseId!).toString(16));
    const client = rawClient(etcd().endpoint);
    try {
      assert.ok((await leaseIds(client)).includes(upA.leaseId!), 'the reported lease is the one etcd has');
    } finally {
      client.close();
    }
    assert.equal(upA.ttlSeconds, ttl);
    assert.equal(upA.since, stateA.since.toISOString());
    assert.ok(Date.parse(upA.since) <= started);
    // a bootstrapped first and won the election; b follows it.
    assert.deepEqual(upA.election, { name: 'leader', isLeader: true, leader: 'node-a' });
    assert.equal(upB.status, 'up');
    assert.notEqual(upB.leaseId, upA.leaseId);
    assert.deepEqual(upB.election, { name: 'leader', isLeader: false, leader: 'node-a' });

    // A named election as an option: b leads "jobs", a does not take part.
    await b.get(ElectionService).campaign('jobs');
    const named: CoordinationHealthOptions = { election: 'jobs' };
    assert.deepEqual(detailOf(await a.get(CoordinationHealthIndicator).isHealthy(KEY, named)).election, { name: 'jobs', isLeader: false, leader: 'node-b' });
    assert.deepEqual(detailOf(await b.get(CoordinationHealthIndicator).isHealthy(KEY, named)).election, { name: 'jobs', isLeader: true, leader: 'node-b' });
    // It keeps following the named election: b resigns, a campaigns and wins.
    await b.get(ElectionService).resign('jobs');
    await a.get(ElectionService).campaign('jobs');
    await eventually(
      async () => detailOf(await b.get(CoordinationHealthIndicator).isHealthy(KEY, named)).election?.leader === 'node-a',
      5_000,
      'b reports the new leader of "jobs"',
    );
    assert.deepEqual(detailOf(await a.get(CoordinationHealthIndicator).isHealthy(KEY, named)).election, { name: 'jobs', isLeader: true, leader: 'node-a' });

    const none = detailOf(await a.get(CoordinationHealthIndicator).isHealthy(KEY, { election: false }));
    assert.equal(none.status, 'up');
    assert.equal(none.election, undefined);
    await assert.rejects(a.get(CoordinationHealthIndicator).isHealthy(KEY, { election: 'bad\u0000name' }), /election/i);
  });

  it('without a default election the details have no election', async () => {
    const app = await healthApp({ hosts: etcd().endpoint, namespace: uniqueNamespace('health-noelection'), election: false });
    const up = detailOf(await app.get(CoordinationHealthIndicator).isHealthy(KEY));
    assert.equal(up.status, 'up');
    assert.equal('election' in up, false);
  });

  it('reports down while connecting (before the first session), in a real HealthCheckService.check', async () => {
    const ns = uniqueNamespace('health-connecting');
    const moduleRef = await Test.createTestingModule({
      imports: [CoordinationModule.forRoot({ hosts: etcd().endpoint, namespace: ns, election: false }), TERMINUS],
      providers: [CoordinationHealthIndicator],
    }).setLogger({ log() {}, warn() {}, error() {} }).compile();
    try {
      const indicator = moduleRef.get(CoordinationHealthIndicator);
      const before = detailOf(await indicator.isHealthy(KEY));
      assert.equal(before.status, 'down');
      assert.equal(before.session, 'connecting');
      assert.equal(before.message, HealthMessages.connecting());
      assert.equal(before.leaseId, undefined);

      const health = moduleRef.get(HealthCheckService);
      const error = await health.check([() => indicator.isHealthy(KEY)]).then(
        () => assert.fail('a down check must fail the health check'),
        (err: unknown) => err,
      );
      // Terminus' own 503 with the result as its body: the indicator returned down, it did not throw.
      assert.ok(error instanceof ServiceUnavailableException, `expected Terminus' ServiceUnavailableException, got ${String(error)}`);
      assert.equal(error.getStatus(), 503);
      const body = error.getResponse() as HealthCheckResult;
      assert.equal(body.status, 'error');
      assert.equal(detailOf(body.error!).status, 'down');
      assert.equal(detailOf(body.error!).message, HealthMessages.connecting());

      await moduleRef.init();
      const up = await health.check([() => indicator.isHealthy(KEY)]);
      assert.equal(up.status, 'ok');
      assert.equal(detailOf(up.info!).status, 'up');
      assert.equal(detailOf(up.details).session, 'alive');
    } finally {
      await moduleRef.close();
    }
  });

});

describe('CoordinationHealthIndicator through an etcd outage longer than the TTL (real etcd, HTTP)', () => {
  const TTL = 3;
  let server: EtcdServer | undefined;
  let app: INestApplication | undefined;
  after(async () => {
    await app?.close();
    // An app of a test that failed before closing it: left open, it would hold the file until its timeout.
    await closeApps();
    await server?.stop();
  });

  it('goes down within TTL + 1 s of losing etcd, a check re-creates the session, up within 1 s of it', async (t) => {
    server = await startEtcd({ name: 'health-outage' });
    const ns = uniqueNamespace('health-outage');
    // No default election, no membership (on by default, it re-registers on a new session at once,
    // see the next test) and no locks: nothing but the health check asks for a new session.
    const http = await httpApp({ hosts: server.endpoint, namespace: ns, sessionTtl: TTL, connectTimeout: 2_000, requestTimeout: 1_000, election: false, membership: false });
    app = http.app;
    const sessions = app.get(SessionService);
    const states: Array<SessionState & { at: number }> = [];
    const subscription = sessions.state$.subscribe((s) => states.push({ ...s, at: performance.now() }));
    const ready = async () => {
      const res = await fetch(http.url);
      return { code: res.status, body: (await res.json()) as HealthCheckResult };
    };
    /** Polls the endpoint every 50 ms until `code`; returns when it came and the body. */
    const pollUntil = async (code: number, timeoutMs: number) => {
      const deadline = performance.now() + timeoutMs;
      for (;;) {
        const startedAt = performance.now();
        const res = await ready();
        const took = performance.now() - startedAt;
        assert.ok(took < 1_000, `a readiness request must answer at once, even while etcd is down (took ${took.toFixed(0)} ms)`);
        if (res.code === code) return { at: performance.now(), ...res };
        if (performance.now() > deadline) throw new Error(`no ${code} within ${timeoutMs} ms; last ${res.code} ${JSON.stringify(res.body)}`);
        await delay(50);
      }
    };

    try {
      const first = await ready();
      assert.equal(first.code, 200);
      assert.equal(first.body.status, 'ok');
      const firstLease = detailOf(first.body.info!).leaseId!;

      // Counts who asks SessionService for a session, and how many such requests overlap
      // (instrumentation of the real service: with election: false only the indicator asks).
      const asks = countSessionRequests(sessions);

      // 1. etcd crashes: down within TTL + 1 s, with the reason, as Terminus' 503 body.
      const killedAt = performance.now();
      await server.kill('SIGKILL');
      const down = await pollUntil(503, TTL * 1000 + 3_000);
      const downAfter = down.at - killedAt;
      const lost = detailOf(down.body.error!);
      assert.equal(down.body.status, 'error');
      assert.equal(lost.status, 'down');
      assert.equal(lost.session, 'lost');
      assert.equal(lost.leaseId, firstLease, 'the lost lease is reported');
      const lostState = states.find((s) => s.status === 'lost')!;
      assert.equal(lost.message, HealthMessages.lost(lostState.reason));
      assert.match(lost.message!, /lost/);
      assert.ok(downAfter <= TTL * 1000 + 1_000, `down ${downAfter.toFixed(0)} ms after etcd was killed (TTL ${TTL} s): must be within TTL + 1 s`);

      assert.equal(asks.calls, 1, 'the first down check asked for a new session');
      // A burst of checks while that attempt runs (bounded by connectTimeout, 2 s) starts no other.
      const indicator = app.get(CoordinationHealthIndicator);
      const burst = await Promise.all(Array.from({ length: 20 }, () => indicator.isHealthy(KEY)));
      assert.ok(burst.every((r) => detailOf(r).status === 'down'));
      // Past the 1 s minimum interval, but before that attempt can have given up (>= 1.5 s).
      await delay(Math.max(0, down.at + 1_100 - performance.now()));
      await ready();
      assert.equal(asks.calls, 1, 'no second attempt while one is in flight, however many checks come');

      // 2. etcd stays down past that attempt: the next check starts one more, which fails too.
      await delay(2_000);
      assert.equal(asks.inFlight, 0, 'the attempt is over (bounded by connectTimeout)');
      const stillDown = await ready();
      assert.equal(stillDown.code, 503);
      assert.equal(asks.calls, 2);
      await delay(2_500);
      assert.equal(asks.inFlight, 0);
      // 3. etcd is back. Nothing but a check asks for a session; a creation attempt of
      // SessionService that was still in flight when etcd came back may finish on its own (an
      // attempt is not abandoned mid-grant, which could leave a lease nobody revokes).
      // Stamped before the restart: an attempt in flight may make the session while restart() still
      // waits for etcd to report healthy (seen on a loaded machine).
      const restartedAt = performance.now();
      await server.restart();
      await delay(2_000);
      if (sessions.state.status === 'alive') t.diagnostic('an attempt in flight since the outage made the session once etcd was back');
      else assert.equal(sessions.state.status, 'lost', 'still lost: only a check re-creates it');
      assert.equal(asks.calls, 2);

      // 4. Checks again: the first one starts the session in the background; up within 1 s of it.
      const checksFrom = performance.now();
      const up = await pollUntil(200, 10_000);
      const alive = states.find((s) => s.status === 'alive' && s.at > restartedAt)!;
      assert.ok(alive, 'a new session');
      // From the new session, or from the first check when the session was already back before it.
      const upAfterSession = up.at - Math.max(alive.at, checksFrom);
      const upDetail = detailOf(up.body.info!);
      assert.equal(upDetail.session, 'alive');
      assert.equal(upDetail.leaseId, alive.leaseId!.toString());
      assert.notEqual(upDetail.leaseId, firstLease);
      assert.ok(upAfterSession <= 1_000, `up ${upAfterSession.toFixed(0)} ms after the new session: must be within 1 s`);

      // Never more than one session at a time: exactly one new lease of ours in etcd.
      const client = rawClient(server.endpoint);
      try {
        const leases = (await leaseIds(client)).filter((id) => id !== firstLease);
        assert.deepEqual(leases, [upDetail.leaseId], 'exactly one new lease');
      } finally {
        client.close();
      }
      assert.equal(asks.maxInFlight, 1, 'never more than one session request at a time');
      const sessionsMade = states.filter((s) => s.status === 'alive').length;
      assert.equal(sessionsMade, 2, 'the bootstrap session and one re-created one');
      t.diagnostic(
        `TTL ${TTL} s: down ${downAfter.toFixed(0)} ms after etcd was killed; ` +
          `first check after etcd was back -> new session ${(alive.at - checksFrom).toFixed(0)} ms; ` +
          `new session -> up ${upAfterSession.toFixed(0)} ms; ${asks.calls} session request(s) in all`,
      );
    } finally {
      subscription.unsubscribe();
    }
  });
  it('app.close() during a background session attempt (etcd down) ends it and leaves nothing running', async (t) => {
    assert.ok(server, 'runs after the outage test, on its etcd');
    await app?.close();
    app = undefined;
    if (!server.running) await server.restart();
    const tracked = trackTimersAndSockets();
    t.after(() => tracked.stop());
    const ctx = await healthApp({ hosts: server.endpoint, namespace: uniqueNamespace('health-close-outage'), sessionTtl: TTL, connectTimeout: 2_000, requestTimeout: 1_000 });
    const sessions = ctx.get(SessionService);
    const indicator = ctx.get(CoordinationHealthIndicator);
    const asks = countSessionRequests(sessions);
    await server.kill('SIGKILL');
    await eventually(async () => detailOf(await indicator.isHealthy(KEY)).session === 'lost', TTL * 1000 + 1_000, 'down: lost');
    // Two wait for the one background attempt: the indicator's check and membership (on by default),
    // which asks for a new session to register on as soon as the old one is lost.
    await eventually(() => asks.inFlight === 2, 1_000, 'the indicator and membership wait for a session');
    const callsBeforeClose = asks.calls;
    const closingAt = performance.now();
    await ctx.close();
    const closeTook = performance.now() - closingAt;
    assert.equal(asks.inFlight, 0, 'the indicator and membership stopped waiting for it');
    // SessionService lets the attempt (bounded by connectTimeout) finish before it closes.
    assert.ok(closeTook < 2_000 + 1_500, `close took ${closeTook.toFixed(0)} ms`);
    const closed = detailOf(await indicator.isHealthy(KEY));
    assert.equal(closed.session, 'closed');
    assert.equal(asks.calls, callsBeforeClose, 'nothing asked for a session after close');
    // etcd3's watch manager keeps re-arming a reconnect timer after its client was closed while
    // etcd is down (not ours, and not the indicator's); everything else must be gone.
    const etcd3Reconnects = (r: { stack: string }) => /etcd3[/\\](lib|src)[/\\]watch\.(js|ts)/.test(r.stack);
    const testHelpers = (r: { stack: string }) => /test[/\\]support[/\\]apps\.(js|ts)/.test(r.stack);
    const ours = () => tracked.live().filter((r) => !etcd3Reconnects(r) && !testHelpers(r));
    for (const deadline = Date.now() + 3_000; ours().length > 0 && Date.now() < deadline; ) await delay(50);
    assert.deepEqual(ours().map((r) => `${r.type} ${r.stack}`), [], 'timers or sockets left after close');
    t.diagnostic(`close during an attempt took ${closeTook.toFixed(0)} ms; etcd3 watch reconnect timers still armed: ${tracked.live().filter(etcd3Reconnects).length}`);
  });
});
