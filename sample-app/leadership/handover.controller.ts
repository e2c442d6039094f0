import { ConflictException, Controller, HttpCode, Post, Query } from '@nestjs/common';
import { CoordinationError, ElectionService, type HandoverResult } from '../coordination.js';

/**
 * `POST /handover?to=<instance id>`: hands leadership of the default election to the named
 * instance (or to the next candidate without `to`), for rolling deploys. The demo calls it on the
 * leader. 409 with the library's message when it is refused (not the leader, no such candidate).
 */
@Controller()
export class HandoverController {
  constructor(private readonly elections: ElectionService) {}

  @Post('handover')
  @HttpCode(200)
  async handover(@Query('to') to?: string): Promise<HandoverResult> {
    try {
      return await this.elections.handover(undefined, to ? { to } : {});
    } catch (err) {
      if (err instanceof CoordinationError) throw new ConflictException(`${err.code}: ${err.message}`);
      throw err;
    }
  }
}
