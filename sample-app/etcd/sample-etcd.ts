import { Inject, Injectable, type OnApplicationShutdown } from '@nestjs/common';
import { Etcd3 } from 'etcd3';
import { SAMPLE_CONFIG, type SampleConfig } from '../sample.config.js';
import { sampleKeys, type SampleKeys } from '../sample.keys.js';

/** Deadline of each etcd call of the app's own data (not the library's, which has its own). */
const CALL_DEADLINE_MS = 3_000;

/**
 * The app's own etcd client, for its data: run records, leadership journal,
 * the fenced report. The coordination library creates and closes its own
 * client; keeping the two apart means neither can close the other's.
 */
@Injectable()
export class SampleEtcd implements OnApplicationShutdown {
  readonly client: Etcd3;
  readonly keys: SampleKeys;

  constructor(@Inject(SAMPLE_CONFIG) config: SampleConfig) {
    this.keys = sampleKeys(config.namespace);
    this.client = new Etcd3({
      hosts: config.etcdHosts,
      // Streams (watches) have no deadline; unary calls must not hang a job forever.
      defaultCallOptions: (context) => (context.isStream ? {} : { deadline: Date.now() + CALL_DEADLINE_MS }),
    });
  }

  /** Runs after every beforeApplicationShutdown hook, so the recorders have flushed their writes. */
  onApplicationShutdown(): void {
    this.client.close();
  }
}
