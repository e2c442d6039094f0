import { readFileSync } from 'node:fs';
import { Controller, Get, Header } from '@nestjs/common';
import { DASHBOARD_HTML } from './dashboard.page.js';

// The compiled dashboard.client.ts sits next to this file in the build output.
const CLIENT_SCRIPT = new URL('./dashboard.client.js', import.meta.url);

/** The dashboard: one HTML page and one script, served by every instance. */
@Controller()
export class DashboardController {
  // Without its source map comment: the map is not served.
  private readonly clientScript = readFileSync(CLIENT_SCRIPT, 'utf8').replace(/^\/\/# sourceMappingURL=.*$/m, '');

  @Get()
  @Header('Content-Type', 'text/html; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  page(): string {
    return DASHBOARD_HTML;
  }

  @Get('dashboard.js')
  @Header('Content-Type', 'text/javascript; charset=utf-8')
  @Header('Cache-Control', 'no-store')
  script(): string {
    return this.clientScript;
  }
}
