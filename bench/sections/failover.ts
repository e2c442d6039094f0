// 5. Leader failover, measured from outside: graceful (app.close() -> resign) and crash (SIGKILL -> lease TTL).
import { Etcd3, type IKeyValue, type Watcher } from 'etcd3';
import { spawnNodeScript, type JsonMessage, type NodeProcess } from '../../test/harness/processes.js';
import { msBetween, nowNs, sleep } from '../common.js';
import type { BenchContext, References } from '../context.js';
import { ratio, round, summarize, type Summary } from '../stats.js';
import { counterDelta, etcdCounters } from '../metrics.js';
import { startYardstick, type GoPeer } from '../go.js';

const NAMESPACE = 'failover/';
const PREFIX = `${NAMESPACE}leader/`;

export interface FailoverTrial {
  kind: 'graceful' | 'crash';
  from: string;
  to: string;
  /** close()/SIGKILL -> the old leader's key is deleted, as seen by an outside etcd watch (bench process), ms. */
  handoverSeenInEtcdMs: number;
  /** close()/SIGKILL -> the new leader's leader$ says isLeader (it may act as leader), ms. */
  newLeaderActingMs: number;
  /** Steps, ms from close()/SIGKILL (stamped by wrapping the library's etcd calls in the workers). */
  steps: {
    resignSent?: number;
    resignDone?: number;
    /** The new leader's last campaign check (after the DELETE event woke it): start and end. */
    checkSent?: number;
    checkDone?: number;
    /** The first DELETE event the new leader's process received after close()/SIGKILL. */
    deleteAtNewLeader?: number;
  };
  /** etcd traffic from just before close()/SIGKILL until the new leader acts and the old process is gone (all processes). */
  etcdRequests: number;
  watchEventsSent: number;
}

export interface FailoverResult {
  method: string;
  sessionTtlSeconds: number;
  trials: FailoverTrial[];
  graceful: {
    newLeaderActing: Summary;
    handoverSeenInEtcd: Summary;
    /** The same chain without the library, same conditions: delete -> watch event in another process -> read returned. */
    rawChain: Summary;
    /** Bound used for the target: the raw chain's p50. */
    boundMs: number;
    p50OverBound: number;
    /** write RTT + read RTT + write-to-watch-event, p50s of section 1's hot loops (an idle machine, warm connections). */
    hotLoopSumMs: number;
    p50OverHotLoopSum: number;
    /** The new leader's side: from the resign request to its DELETE reaching the new leader's process. */
    resignToDeleteAtNewLeader: Summary;
    /** The new leader's side: from that DELETE event to its leader$ saying isLeader. */
    deleteToActing: Summary;
  };
  crash: { newLeaderActing: Summary; handoverSeenInEtcd: Summary; targetMs: number };
  /**
   * etcd's own Go Election (3 Go processes, same TTL), one trial before each graceful trial of ours:
   * the leader stamps and calls Resign, the next one's Campaign returns. Absent without Go.
   */
  go?: {
    resignToElected: Summary;
    /** Ours measured from its resign request (leaving out Nest's shutdown hooks before it), ms. */
    oursFromResignSent: Summary;
    oursOverGoP50: number;
    oursFromResignOverGoP50: number;
    rawChainOverGoP50: number;
  };
  goSkipped?: string;
}

/** Three Go candidates on one election; trial(): the leader resigns and re-queues. */
class GoElection {
  private readonly peers: GoPeer[] = [];
  private leader?: GoPeer;
  private readonly name = 'failover-go/leader';

  async start(binary: string, endpoint: string, ttl: number): Promise<void> {
    for (let i = 0; i < 3; i++) {
      const peer = await startYardstick(binary, endpoint, `go-elect-${i}`, ttl);
      this.peers.push(peer);
      peer.send({ type: 'campaign', name: this.name, value: peer.name });
      if (i === 0) {
        await this.electedAfter([peer], 0n, 30_000);
        this.leader = peer;
      }
    }
  }

  private async electedAfter(peers: GoPeer[], after: bigint, timeoutMs: number): Promise<{ peer: GoPeer; t: bigint }> {
    const until = Date.now() + timeoutMs;
    for (;;) {
      for (const peer of peers) {
        const m = peer.messages.find((x) => x.type === 'elected' && BigInt(String(x.t)) > after);
        if (m) return { peer, t: BigInt(String(m.t)) };
      }
      if (Date.now() > until) throw new Error(`no Go candidate elected within ${timeoutMs} ms`);
      await sleep(2);
    }
  }

  /** ms from the leader's Resign call to the next candidate's Campaign returning. */
  async trial(): Promise<number> {
    const old = this.leader!;
    old.send({ type: 'resign', name: this.name });
    const t0 = BigInt(String((await old.waitForMessage('resigning', 10_000)).t));
    const next = await this.electedAfter(this.peers.filter((p) => p !== old), t0, 15_000);
    await old.waitForMessage('resigned', 10_000);
    this.leader = next.peer;
    old.send({ type: 'campaign', name: this.name, value: old.name });
    return msBetween(t0, next.t);
  }

  async stop(): Promise<void> {
    await Promise.all(this.peers.map((p) => p.close()));
  }
}

/** Candidate keys of the election, seen through a raw etcd3 watch (no library code). */
class ElectionObserver {
  private readonly keys = new Map<string, { revision: bigint; value: string }>();
  private watcher?: Watcher;
  private deletions: Array<{ key: string; resolve: (at: bigint) => void }> = [];

  constructor(private readonly client: Etcd3) {}

  async start(): Promise<void> {
    const res = await this.client.getAll().prefix(PREFIX).exec();
    for (const kv of res.kvs) this.onPut(kv);
    this.watcher = await this.client.watch().prefix(PREFIX).startRevision(String(BigInt(res.header.revision) + 1n)).create();
    this.watcher.on('put', (kv: IKeyValue) => this.onPut(kv));
    this.watcher.on('delete', (kv: IKeyValue) => {
      const at = nowNs();
      const key = kv.key.toString();
      this.keys.delete(key);
      for (const d of this.deletions.filter((x) => x.key === key)) d.resolve(at);
      this.deletions = this.deletions.filter((x) => x.key !== key);
    });
  }

  private onPut(kv: IKeyValue): void {
    const key = kv.key.toString();
    const existing = this.keys.get(key);
    this.keys.set(key, { revision: existing?.revision ?? BigInt(kv.create_revision), value: kv.value.toString() });
  }

  /** The leader (oldest candidate key): its key and value (the worker's identity). */
  leader(): { key: string; value: string } | undefined {
    let best: { key: string; revision: bigint; value: string } | undefined;
    for (const [key, { revision, value }] of this.keys) if (!best || revision < best.revision) best = { key, revision, value };
    return best;
  }

  candidates(): string[] {
    return [...this.keys.values()].map((v) => v.value);
  }

  /** Resolves with the time the bench process saw `key` deleted. */
  deletionOf(key: string): Promise<bigint> {
    return new Promise((resolve) => this.deletions.push({ key, resolve }));
  }

  async stop(): Promise<void> {
    this.watcher?.removeAllListeners();
    await this.watcher?.cancel().catch(() => undefined);
  }
}

/** The first 'state' message saying isLeader from any of `workers`, stamped after `after` (polls the message logs). */
async function newLeaderMessage(workers: NodeProcess[], after: bigint, timeoutMs: number): Promise<{ worker: NodeProcess; message: JsonMessage }> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    for (const worker of workers) {
      const message = worker.messages.find((m) => m.type === 'state' && m.isLeader === true && BigInt(String(m.t)) > after);
      if (message) return { worker, message };
    }
    if (Date.now() > until) throw new Error(`no new leader within ${timeoutMs} ms`);
    await sleep(5);
  }
}

export async function failover(ctx: BenchContext, refs: References | undefined): Promise<FailoverResult> {
  const ttl = 3;
  const gracefulTrials = ctx.quick ? 2 : 10;
  const crashTrials = ctx.quick ? 1 : 4;
  const client = new Etcd3({ hosts: ctx.etcd.endpoint });
  const observer = new ElectionObserver(client);
  const workers = new Map<string, NodeProcess>();
  let serial = 0;
  const chainer = spawnNodeScript('bench/worker.js', { args: ['chain', ctx.etcd.endpoint], name: 'raw-chain' });
  const rawChain: number[] = [];
  /** One graceful handover without the library: the runner deletes a key, another process reads on the event. */
  const rawChainTrial = async (): Promise<void> => {
    const prefix = 'failover-raw/';
    const key = `${prefix}leader`;
    await client.put(key).value('x');
    chainer.send({ type: 'arm', key, prefix });
    await chainer.waitForMessage('armed', 10_000);
    await sleep(300); // idle before the handover, like the trials
    const t0 = nowNs();
    await client.delete().key(key);
    const done = await chainer.waitForMessage('chained', 10_000);
    rawChain.push(msBetween(t0, BigInt(String(done.t))));
  };

  const spawnCandidate = async (): Promise<NodeProcess> => {
    const identity = `node-${serial++}`;
    const worker = spawnNodeScript('bench/worker.js', {
      args: ['elect', ctx.etcd.endpoint, identity, NAMESPACE, String(ttl)],
      name: identity,
    });
    workers.set(identity, worker);
    await worker.waitForMessage('ready', 60_000);
    const until = Date.now() + 30_000;
    while (!observer.candidates().includes(identity)) {
      if (Date.now() > until) throw new Error(`${identity} never campaigned`);
      await sleep(10);
    }
    return worker;
  };

  const goElection = ctx.go.binary ? new GoElection() : undefined;
  const goTimes: number[] = [];
  try {
    await observer.start();
    await chainer.waitForMessage('ready', 60_000);
    await goElection?.start(ctx.go.binary!, ctx.etcd.endpoint, ttl);
    for (let i = 0; i < 3; i++) await spawnCandidate();
    const trials: FailoverTrial[] = [];
    const kinds: Array<'graceful' | 'crash'> = [
      ...Array<'graceful'>(gracefulTrials).fill('graceful'),
      ...Array<'crash'>(crashTrials).fill('crash'),
    ];
    for (const kind of kinds) {
      const leader = observer.leader();
      if (!leader) throw new Error('no leader in etcd');
      const old = workers.get(leader.value);
      if (!old) throw new Error(`leader ${leader.value} is not one of our workers`);
      // The leader itself must know it leads before we take it down.
      await newLeaderMessage([old], 0n, 30_000);
      if (kind === 'graceful') {
        await rawChainTrial();
        if (goElection) {
          await sleep(300); // idle before the handover, like the trials
          goTimes.push(await goElection.trial());
        }
      }
      await sleep(300);
      const others = [...workers.values()].filter((w) => w !== old && w.running);
      const deleted = observer.deletionOf(leader.key);
      const countersBefore = await etcdCounters(ctx.etcd.clientUrl);
      let t0: bigint;
      if (kind === 'graceful') {
        old.send({ type: 'close' });
        t0 = BigInt(String((await old.waitForMessage('closing', 10_000)).t));
      } else {
        // Kill at a random point of the keepalive cycle (keepalive every TTL/3).
        await sleep(Math.random() * (ttl * 1000) / 3);
        t0 = nowNs();
        process.kill(old.pid!, 'SIGKILL');
      }
      const { worker: next, message } = await newLeaderMessage(others, t0, (ttl + 15) * 1000);
      const seen = await deleted;
      // Marks of the old leader arrive until it has closed: read them once it is gone.
      if (kind === 'graceful') await old.waitForMessage('closed', 15_000).catch(() => undefined);
      await old.exited;
      const countersAfter = await etcdCounters(ctx.etcd.clientUrl);
      const traffic = counterDelta(countersBefore, countersAfter);
      const acting = BigInt(String(message.t));
      const stamp = (v: unknown) => (v === undefined ? undefined : round(msBetween(t0, BigInt(String(v))), 3));
      const resign = old.messages.find((m) => m.type === 'mark' && m.what === 'resign' && BigInt(String(m.start)) >= t0);
      const check = next.messages.filter((m) => m.type === 'mark' && m.what === 'check' && BigInt(String(m.start)) >= t0 && BigInt(String(m.end)) <= acting).at(-1);
      const woke = next.messages.find((m) => m.type === 'mark' && m.what === 'delete-event' && BigInt(String(m.t)) >= t0 && BigInt(String(m.t)) <= acting);
      trials.push({
        kind,
        from: leader.value,
        to: next.name,
        handoverSeenInEtcdMs: round(msBetween(t0, seen), 3),
        newLeaderActingMs: round(msBetween(t0, acting), 3),
        steps: { resignSent: stamp(resign?.start), resignDone: stamp(resign?.end), checkSent: stamp(check?.start), checkDone: stamp(check?.end), deleteAtNewLeader: stamp(woke?.t) },
        etcdRequests: traffic.unaryTotal,
        watchEventsSent: traffic.watchEventsSent,
      });
      ctx.log(`${kind}: ${leader.value} -> ${next.name} in ${trials.at(-1)!.newLeaderActingMs} ms`);
      workers.delete(leader.value);
      await spawnCandidate();
    }
    const pick = (kind: string, f: (t: FailoverTrial) => number) => summarize(trials.filter((t) => t.kind === kind).map(f));
    const hotLoopSum = refs ? round(refs.writeP50 + refs.readP50 + refs.writeToWatchEventP50, 3) : Number.NaN;
    const gracefulActing = pick('graceful', (t) => t.newLeaderActingMs);
    const raw = summarize(rawChain);
    const graceful = trials.filter((t) => t.kind === 'graceful');
    const goPart: Pick<FailoverResult, 'go' | 'goSkipped'> = goElection
      ? (() => {
          const go = summarize(goTimes);
          const fromResign = summarize(graceful.filter((t) => t.steps.resignSent !== undefined).map((t) => t.newLeaderActingMs - t.steps.resignSent!));
          return {
            go: {
              resignToElected: go,
              oursFromResignSent: fromResign,
              oursOverGoP50: ratio(gracefulActing.p50, go.p50),
              oursFromResignOverGoP50: ratio(fromResign.p50, go.p50),
              rawChainOverGoP50: ratio(raw.p50, go.p50),
            },
          };
        })()
      : { goSkipped: ctx.go.unavailable };
    return {
      ...goPart,
      method:
        `3 candidate processes (Nest apps, default election, sessionTtl ${ttl} s); the leader is taken down and replaced by a ` +
        'new candidate after each trial. graceful: the leader process stamps the time and calls app.close() (the module ' +
        'resigns). crash: the runner stamps the time and SIGKILLs the leader (its key goes when etcd expires the lease). ' +
        'handoverSeenInEtcd: the old key\'s DELETE arrives at a raw etcd3 watch in the runner; newLeaderActing: the next ' +
        "process's leader$ reports isLeader (its own stamp). Graceful bound (2 round trips + watch delivery) = the same chain " +
        'without the library, run before each graceful trial after the same 300 ms idle: the runner deletes a key, a raw etcd3 ' +
        'client in another process reads the prefix on the DELETE event; stamped from before the delete to the read returning. ' +
        'hotLoopSum = write + read + write-to-watch-event p50s from section 1 (warm, back-to-back requests). ' +
        "go: 3 Go processes with etcd's own concurrency.Election (same TTL), one trial before each graceful trial: the " +
        'leader stamps and calls Resign, time to the next candidate\'s Campaign returning (its own stamp); the old leader ' +
        'campaigns again. oursFromResignSent: ours from its resign request, leaving out the Nest shutdown hooks before it.',
      sessionTtlSeconds: ttl,
      trials,
      graceful: {
        newLeaderActing: gracefulActing,
        handoverSeenInEtcd: pick('graceful', (t) => t.handoverSeenInEtcdMs),
        rawChain: raw,
        boundMs: raw.p50,
        p50OverBound: ratio(gracefulActing.p50, raw.p50),
        hotLoopSumMs: hotLoopSum,
        p50OverHotLoopSum: ratio(gracefulActing.p50, hotLoopSum),
        resignToDeleteAtNewLeader: summarize(
          graceful.filter((t) => t.steps.deleteAtNewLeader !== undefined && t.steps.resignSent !== undefined).map((t) => t.steps.deleteAtNewLeader! - t.steps.resignSent!),
        ),
        deleteToActing: summarize(graceful.filter((t) => t.steps.deleteAtNewLeader !== undefined).map((t) => t.newLeaderActingMs - t.steps.deleteAtNewLeader!)),
      },
      crash: {
        newLeaderActing: pick('crash', (t) => t.newLeaderActingMs),
        handoverSeenInEtcd: pick('crash', (t) => t.handoverSeenInEtcdMs),
        targetMs: ttl * 1000 + 1000,
      },
    };
  } finally {
    await goElection?.stop();
    await chainer.kill('SIGKILL');
    await observer.stop();
    await Promise.all(
      [...workers.values()].map(async (w) => {
        if (!w.running) return;
        try {
          w.send({ type: 'close' });
          await w.waitForMessage('closed', 10_000);
        } catch {
          // killed below
        }
        await w.kill('SIGKILL');
      }),
    );
    client.close();
  }
}
