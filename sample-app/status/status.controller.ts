import { Controller, Get, Header, MessageEvent, ParseIntPipe, Query, Sse } from '@nestjs/common';
import { map, type Observable } from 'rxjs';
import type { ClusterHistory, InstanceStatus } from '../sample.types.js';
import { StatusService } from './status.service.js';

@Controller()
export class StatusController {
  constructor(private readonly status: StatusService) {}

  /** This instance: identity, role, the leader it knows, held locks, session state, run counters. */
  @Get('status')
  @Header('Cache-Control', 'no-store')
  getStatus(): InstanceStatus {
    return this.status.status();
  }

  /** What all instances recorded in etcd: runs since `?since=<epoch ms>` (default: 2 min), terms, the report. */
  @Get('history')
  @Header('Cache-Control', 'no-store')
  getHistory(@Query('since', new ParseIntPipe({ optional: true })) since?: number): Promise<ClusterHistory> {
    return this.status.history(since);
  }

  /** Server-sent events: every leader$ change, session state change and job run of this instance. */
  @Sse('events')
  events(): Observable<MessageEvent> {
    return this.status.events().pipe(map((data) => ({ data })));
  }
}
