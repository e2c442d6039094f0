import { readFileSync } from 'node:fs';
import { Controller, Get, Header } from '@nestjs/common';
import { MembershipService } from '../coordination.js';
import { TENANT_SHARDS } from './tenant.keys.js';
import { TenantJobs } from './tenant-jobs.service.js';

// The compiled tenants.client.ts sits next to this file in the build output.
const CLIENT_SCRIPT = new URL('./tenants.client.js', import.meta.url);

/** What GET /shards answers: this instance's shards, the members, and who owns each shard (from etcd). */
export interface ShardsView {
  instance: string;
  memberId: string | null;
  owned: number[];
  runs: number;
  members: Array<{ id: string; identity: string; value: unknown; joinedAt: string }>;
  owners: Array<{ shard: number; identity: string | null; fencingToken: string | null }>;
}

@Controller()
export class TenantsController {
  private readonly clientScript = readFileSync(CLIENT_SCRIPT, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');

  constructor(
    private readonly tenants: TenantJobs,
    private readonly membership: MembershipService,
  ) {}

  @Get('shards')
  @Header('Cache-Control', 'no-store')
  async shards(): Promise<ShardsView> {
    const group = this.tenants.group;
    const [members, owners] = await Promise.all([
      this.membership.members(),
      Promise.all(Array.from({ length: TENANT_SHARDS }, (_, shard) => group.ownerOfShard(shard))),
    ]);
    return {
      instance: members.find((m) => m.id === this.membership.selfId)?.identity ?? '',
      memberId: this.membership.selfId ?? null,
      owned: [...group.ownedShards()].sort((a, b) => a - b),
      runs: this.tenants.runs,
      members: members.map((m) => ({ id: m.id, identity: m.identity, value: m.value, joinedAt: m.joinedAt.toISOString() })),
      owners: owners.map((o, shard) => ({ shard, identity: o?.identity ?? null, fencingToken: o?.fencingToken.toString() ?? null })),
    };
  }

  @Get('tenants.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  script(): string {
    return this.clientScript;
  }
}
