// One instance of the sample cluster. Start a few against the same etcd:
//
//   ETCD_HOSTS=127.0.0.1:2379 PORT=3001 INSTANCE_ID=app-1 PEERS=http://127.0.0.1:3002 node build/sample-app/main.js
//   ETCD_HOSTS=127.0.0.1:2379 PORT=3002 INSTANCE_ID=app-2 PEERS=http://127.0.0.1:3001 node build/sample-app/main.js
//
// and open http://127.0.0.1:3001/. `npm run demo` does all of this for you.
import 'reflect-metadata';
import { Logger } from '@nestjs/common';
import { NestFactory } from '@nestjs/core';
import { AppModule } from './app.module.js';
import { loadSampleConfig, SampleConfigError } from './sample.config.js';
import { StatusService } from './status/status.service.js';

async function bootstrap(): Promise<void> {
  const config = loadSampleConfig();
  const app = await NestFactory.create(AppModule.forConfig(config), {
    // LOG_LEVEL=debug also shows every skipped @LeaderOnly/@WithLock call.
    logger: process.env.LOG_LEVEL === 'debug' ? ['error', 'warn', 'log', 'debug'] : ['error', 'warn', 'log'],
    // Open server-sent event streams would otherwise keep the server from closing.
    forceCloseConnections: true,
  });
  // The dashboard served by one instance reads /status, /history and /events of all of them.
  app.enableCors();
  // SIGTERM/SIGINT: resign leadership, release locks, revoke the session, then exit 0
  // (or 1 if shutting down failed), instead of dying with leadership held until the TTL.
  app.enableShutdownHooks([], { useProcessExit: true });
  await app.listen(config.port, config.host);
  const status = app.get(StatusService);
  status.listening();
  new Logger('SampleApp').log(`${config.instanceId} listening on ${status.ownUrl} (etcd ${config.etcdHosts.join(',')}, namespace "${config.namespace}")`);
}

bootstrap().catch((err: unknown) => {
  console.error(err instanceof SampleConfigError ? err.message : err);
  process.exit(1);
});
