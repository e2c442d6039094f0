import { Injectable } from '@nestjs/common';
import { SampleEtcd } from '../etcd/sample-etcd.js';
import { padNumber } from '../sample.keys.js';
import type { ReportState } from '../sample.types.js';

export type ReportWriteResult =
  | { accepted: true }
  | { accepted: false; highestToken: string; highestWriter: string };

/**
 * The shared resource of the report job, kept in etcd. It is the resource, not
 * the lock, that makes the job safe: it remembers the highest fencing token it
 * accepted and refuses writes that carry a lower one. A holder that lost its
 * lock without noticing (a long GC pause, a stopped VM) therefore cannot
 * overwrite the work of the holder that came after it.
 *
 * The check and the write are one etcd transaction:
 *   if fence > myToken   then refuse (and read who wrote last)
 *   else                 fence := myToken; value := report
 * The fence is stored zero-padded, so etcd's byte comparison is numeric.
 * (On a missing key a Value comparison is false: the first write is accepted.)
 */
@Injectable()
export class FencedReportStore {
  constructor(private readonly etcd: SampleEtcd) {}

  async write(content: string, fencingToken: bigint, writer: string): Promise<ReportWriteResult> {
    const { client, keys } = this.etcd;
    const fence = padNumber(fencingToken);
    const state: Omit<ReportState, 'version'> = { fencingToken: fencingToken.toString(), writer, writtenAt: Date.now(), content };
    const result = await client
      .if(keys.reportFence, 'Value', '>', fence)
      .then(client.get(keys.reportValue))
      .else(client.put(keys.reportFence).value(fence), client.put(keys.reportValue).value(JSON.stringify(state)))
      .commit();
    if (!result.succeeded) return { accepted: true };
    const kv = result.responses[0]?.response_range.kvs[0];
    const current = kv ? (JSON.parse(kv.value.toString()) as ReportState) : undefined;
    return { accepted: false, highestToken: current?.fencingToken ?? '?', highestWriter: current?.writer ?? '?' };
  }

  /** The report as last accepted, or null before the first write. */
  async read(): Promise<ReportState | null> {
    const { client, keys } = this.etcd;
    const response = await client.get(keys.reportValue).exec();
    const kv = response.kvs[0];
    if (!kv) return null;
    return { ...(JSON.parse(kv.value.toString()) as Omit<ReportState, 'version'>), version: Number(kv.version) };
  }
}
