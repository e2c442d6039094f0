// A watch from a past revision whose stream drops is ended as 'failed' (its caller re-reads), not
// resumed by etcd3: etcd answers a watch's creation with its CURRENT revision even when the watch
// starts in the past and has not caught up yet, and etcd3 resumes a dropped watch from that
// revision plus one, which would skip the events in between (docs/handoff.md relies on none being
// skipped). A watch from "now" is resumed as before. Real etcd behind a TCP proxy.
import 'reflect-metadata';
import assert from 'node:assert/strict';
import { after, describe, it } from 'node:test';
import { etcdFixture } from './harness/etcd.js';
import { startProxy } from './harness/proxy.js';
import { EtcdWatches } from '../lib/etcd/watch.js';
import { closeApps, createApp, eventually, rawClient, uniqueNamespace } from './support/apps.js';

const etcd = etcdFixture();

describe('watch streams that drop (real etcd, TCP proxy)', () => {
  after(() => closeApps());

  it('a watch from a past revision ends as failed when its stream drops; a watch from now resumes and still delivers', async () => {
    const proxy = await startProxy(etcd().endpoint);
    const ns = uniqueNamespace('watch-resume');
    const app = await createApp({ hosts: proxy.endpoint, namespace: ns, identity: 'w', connectTimeout: 20_000 });
    const watches = app.get(EtcdWatches);
    const direct = rawClient(etcd().endpoint);
    const stop = new AbortController();
    try {
      const put = await direct.put(`${ns}past`).value('1').exec();
      const revision = BigInt(put.header.revision);
      await direct.put(`${ns}other`).value('x'); // the store moves on: the next watch starts in the past
      let pastEnd: string | undefined;
      void watches.follow({ key: Buffer.from(`${ns}past`), fromRevision: revision + 1n, onCreated: () => undefined }, stop.signal, () => false).then((end) => (pastEnd = end));
      const nowEvents: string[] = [];
      let nowCreated = false;
      void watches.follow({ key: Buffer.from(`${ns}now`), fromRevision: 0n, onCreated: () => (nowCreated = true) }, stop.signal, ({ kv }) => {
        nowEvents.push(kv.value.toString());
        return false;
      });
      await eventually(() => nowCreated, 10_000, 'both watches created');
      proxy.dropConnections();
      await eventually(() => pastEnd !== undefined, 10_000, 'the watch from a past revision ended');
      assert.equal(pastEnd, 'failed');
      // The watch from now is resumed by etcd3 on the new stream.
      await eventually(async () => {
        await direct.put(`${ns}now`).value('after');
        return nowEvents.includes('after');
      }, 15_000, 'the watch from now delivers after the reconnect');
    } finally {
      stop.abort();
      direct.close();
      await proxy.close();
    }
  });
});
