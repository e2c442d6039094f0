// Reproduces the soak's finding 1 (docs/faults.md, "What the soak found"): a waiter whose watch
// event is lost on a connection that stays open waits forever while its session lives, and
// every waiter behind it waits too. Two workers loop on a mutex and a 1-permit semaphore; the
// link of one of them is blackholed for 0.2-1.5 s (shorter than the 3 s TTL, so no session is
// lost) every few seconds. After each, both workers must hold both again within RECOVER_MS: the
// session TTL (a waiter re-reads the queue at least once per TTL) plus one request timeout (a
// request on a connection the blackhole wedged fails at its deadline, and the next one dials anew)
// plus 2 s of slack.
//   npm run soak -- --help   (builds .cache/soak-build), then
//   node .cache/soak-build/test/soak/lost-watch.js [rounds]     exit code 1 when a waiter got stuck
import { Etcd3 } from 'etcd3';
import { startEtcd } from '../harness/etcd.js';
import { startProxy } from '../harness/proxy.js';
import { spawnWorker } from '../support/workers.js';
import type { SoakStart } from '../fixtures/commands/soak.js';
import { prng } from './nemesis.js';

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));
const rounds = Number(process.argv[2] ?? 40);
const random = prng(Number(process.argv[3] ?? 1));
const etcd = await startEtcd({ name: 'lost-watch' });
const raw = new Etcd3({ hosts: etcd.endpoint });
const ns = 'lost-watch/';
const proxies = [await startProxy(etcd.endpoint), await startProxy(etcd.endpoint)];
const workers = proxies.map((p, i) =>
  spawnWorker({ use: ['soak'], hosts: [p.endpoint], namespace: ns, identity: `w${i}`, ttl: 3, election: 'leader', requestTimeout: 2_000, connectTimeout: 10_000, resource: { hosts: [etcd.endpoint], prefix: ns } }),
);
const RECOVER_MS = 3_000 + 2_000 + 2_000;
let stuck = false;
try {
  for (const w of workers) await w.waitForMessage('ready', 30_000);
  for (const [i, w] of workers.entries()) {
    const cmd: SoakStart = { mutex: 'm', semaphore: 's', permits: 1, counterKey: `${ns}counter`, seed: i + 1, counterGapMs: [0, 10], counterThinkMs: [0, 2], semHoldMs: [10, 60], semGapMs: [0, 20], leaderTickMs: 200 };
    w.send({ type: 'soak-start', ...cmd });
  }
  for (let round = 0; round < rounds && !stuck; round++) {
    const ms = Math.round(200 + random() * 1_300);
    const at = Date.now();
    proxies[0]!.blackhole();
    await sleep(ms);
    proxies[0]!.pass();
    await sleep(RECOVER_MS);
    const since = Date.now() - 1_500;
    for (const w of workers) {
      for (const kind of ['mutex', 'sem']) {
        if (!w.messages.some((m) => m.type === 'hold' && m.kind === kind && Number(m.at) >= since)) {
          stuck = true;
          console.log(`round ${round}: after a ${ms} ms blackhole of w0's link at ${new Date(at).toISOString()}, ${w.name} has not held "${kind}" within ${RECOVER_MS} ms`);
        }
      }
    }
  }
  if (stuck) {
    await sleep(5_000);
    const owners = new Map<string, string>();
    for (const w of workers) for (const m of w.messages) if (m.type === 'session' && typeof m.lease === 'string') owners.set(m.lease, w.name);
    const range = await raw.kv.range({ key: Buffer.from(ns), range_end: Buffer.from('lost-watch0') });
    console.log('5 s later, the keys in etcd (every session alive):');
    for (const kv of range.kvs) {
      const lease = BigInt(kv.lease).toString(16);
      console.log(`  ${kv.key.toString()}  create revision ${kv.create_revision}  ${kv.lease === '0' ? '' : `lease of ${owners.get(lease) ?? lease}`}`);
    }
  } else {
    console.log(`no stuck waiter in ${rounds} rounds`);
  }
} finally {
  await Promise.all(workers.map((w) => w.kill('SIGKILL')));
  raw.close();
  await Promise.all(proxies.map((p) => p.close()));
  await etcd.stop();
}
process.exit(stuck ? 1 : 0);
