import { Module, type DynamicModule } from '@nestjs/common';
import { ScheduleModule } from '@nestjs/schedule';
import { CoordinationModule } from './coordination.js';
import { DashboardController } from './dashboard/dashboard.controller.js';
import { SampleEtcd } from './etcd/sample-etcd.js';
import { JobRunRecorder } from './jobs/job-runs.recorder.js';
import { LeaderJobs } from './jobs/leader-jobs.service.js';
import { ReportJob } from './jobs/report.job.js';
import { LeadershipJournal } from './leadership/leadership.journal.js';
import { HandoverController } from './leadership/handover.controller.js';
import { FencedReportStore } from './report/fenced-report.store.js';
import { SAMPLE_CONFIG, type SampleConfig } from './sample.config.js';
import { ELECTION } from './sample.keys.js';
import { StatusController } from './status/status.controller.js';
import { StatusService } from './status/status.service.js';
import { TenantJobs } from './tenants/tenant-jobs.service.js';
import { TenantsController } from './tenants/tenants.controller.js';

@Module({})
export class AppModule {
  static forConfig(config: SampleConfig): DynamicModule {
    return {
      module: AppModule,
      imports: [
        ScheduleModule.forRoot(),
        CoordinationModule.forRoot({
          hosts: config.etcdHosts,
          namespace: config.namespace,
          identity: config.instanceId,
          sessionTtl: config.sessionTtl,
          election: ELECTION,
          // Member records (on by default, stated here because the app relies on them): the shard
          // groups need them, and a hand-over to a named instance moves the candidates before it
          // only when they are known members.
          membership: true,
        }),
      ],
      controllers: [StatusController, DashboardController, TenantsController, HandoverController],
      providers: [
        { provide: SAMPLE_CONFIG, useValue: config },
        SampleEtcd,
        JobRunRecorder,
        LeadershipJournal,
        FencedReportStore,
        LeaderJobs,
        ReportJob,
        StatusService,
        TenantJobs,
      ],
    };
  }
}
