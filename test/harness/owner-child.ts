// Child script for the harness self-test: owns an etcd server and a Node grandchild, then
// waits to be SIGKILLed so the test can check that both die with it and the temp dir goes.
import { emit } from './child.js';
import { startEtcd } from './etcd.js';
import { spawnNodeScript } from './processes.js';

const etcd = await startEtcd({ name: 'orphan-check' });
const grandchild = spawnNodeScript('test/harness/echo-child.js');
const ready = await grandchild.waitForMessage('ready');
emit({ type: 'started', etcdPid: etcd.pid, dataDir: etcd.dataDir, grandchildPid: ready.pid });
// Keep running until killed.
setInterval(() => {}, 60_000);
