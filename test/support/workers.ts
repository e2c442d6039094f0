// Starts test/fixtures/worker.ts: an app instance in its own OS process with the command
// modules it is asked for (see the top of worker.ts), driven over JSON lines.
//
//   const worker = spawnWorker({ use: ['locks'], hosts: etcd().endpoint, namespace: ns, identity: 'a', ttl: 2 });
//   await worker.waitForMessage('ready', 20_000);
//   worker.send({ type: 'acquire', name: 'c' });
import { spawnNodeScript, type NodeProcess, type NodeScriptOptions } from '../harness/processes.js';
import type { WorkerConfig } from '../fixtures/commands/kit.js';

export type { CapabilityName, WorkerConfig } from '../fixtures/commands/kit.js';

/** Spawns a worker for `config`; its name (in messages and logs) is its identity unless `options.name` says otherwise. */
export function spawnWorker(config: WorkerConfig, options: Omit<NodeScriptOptions, 'args'> = {}): NodeProcess {
  return spawnNodeScript('test/fixtures/worker.js', { name: config.identity, ...options, args: [JSON.stringify(config)] });
}
