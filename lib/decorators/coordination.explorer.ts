import { Inject, Injectable, Optional, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { Instrumentation } from '../observability/instrumentation.js';
import { INSTRUMENTATION } from '../observability/instrumentation.token.js';
import { Messages } from '../coordination.messages.js';
import { DiscoveryService } from '@nestjs/core';
import { LockService } from '../lock/lock.service.js';
import { ElectionService } from '../election/election.service.js';
import { ShutdownDrain } from '../shutdown/shutdown-drain.js';
import { InvalidUsageError } from '../errors/coordination.errors.js';
import { JobsService } from '../jobs/jobs.service.js';
import {
  applicationBound,
  bindClass,
  scheduledGuardedMethods,
  bindInstance,
  guardedMethodRefusals,
  hasDecoratedMethods,
  unbindClass,
  type CoordinationRuntime,
} from './coordination.runtime.js';

/**
 * Binds every provider and controller with `@WithLock`/`@LeaderOnly`
 * methods to this application's services. The decorators wrap methods at
 * class definition time (so `@nestjs/schedule` captures the guarded method
 * whatever the order); the binding only tells the wrapper which application
 * it belongs to. Unbound calls fail closed.
 */
@Injectable()
export class CoordinationExplorer implements OnModuleInit, OnApplicationShutdown {
  private readonly runtime: CoordinationRuntime;
  private readonly boundClasses: Function[] = [];
  private unbindApplication?: () => void;

  constructor(
    private readonly discovery: DiscoveryService,
    locks: LockService,
    elections: ElectionService,
    drain: ShutdownDrain,
    @Optional() @Inject(INSTRUMENTATION) instrumentation?: Instrumentation,
    // Optional: the testing kit (lib/testing) does not provide it.
    @Optional() jobs?: JobsService,
  ) {
    this.runtime = { locks, elections, logger: (instrumentation ?? Instrumentation.plain()).logger, jobs, drain };
    // Providers are created before any lifecycle hook: refusing here leaves no session behind.
    refuseUnguardableMethods(discovery);
  }

  onModuleInit(): void {
    this.unbindApplication = applicationBound();
    const scheduled: string[] = [];
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const { instance, metatype } = wrapper;
      const isSingleton = wrapper.isDependencyTreeStatic() && !wrapper.isTransient;
      if (isSingleton) {
        if (!instance || typeof instance !== 'object' || !hasDecoratedMethods(instance)) continue;
        scheduled.push(...scheduledGuardedMethods(instance));
        // Stays bound after shutdown (a WeakMap entry): late calls then skip or fail with ShutdownError.
        bindInstance(instance, this.runtime);
      } else {
        // Request-scoped and transient instances do not exist yet: bind their class.
        const type = typeof metatype === 'function' ? metatype : undefined;
        if (!type || !hasDecoratedMethods(type.prototype)) continue;
        bindClass(type, this.runtime);
        this.boundClasses.push(type);
      }
    }
    // @Cron/@Interval/@Timeout only run when @nestjs/schedule's module is there to call them.
    const hasScheduler = this.discovery.getProviders().some((w) => w.name === 'SchedulerRegistry');
    if (scheduled.length > 0 && !hasScheduler) this.runtime.logger.warn(Messages.log.noScheduler(scheduled));
  }

  onApplicationShutdown(): void {
    this.unbindApplication?.();
    for (const type of this.boundClasses.splice(0)) unbindClass(type, this.runtime);
  }
}

/**
 * Fails bootstrap with `InvalidUsageError` when a decorated method cannot be
 * guarded: a `@WithLock` method that is not async (see `methodKind` in
 * method-wrapper.ts for the rule). Classes are checked by their prototype, so
 * instances need not exist yet; objects made by factory providers do not
 * exist yet and are checked at their first call instead.
 */
function refuseUnguardableMethods(discovery: DiscoveryService): void {
  const problems: string[] = [];
  for (const wrapper of [...discovery.getProviders(), ...discovery.getControllers()]) {
    const { metatype, instance, inject } = wrapper;
    const source = typeof metatype === 'function' && !inject ? metatype.prototype : instance;
    if (!source || typeof source !== 'object' || !hasDecoratedMethods(source)) continue;
    for (const problem of guardedMethodRefusals(source)) if (!problems.includes(problem)) problems.push(problem);
  }
  if (problems.length > 0) throw new InvalidUsageError(Messages.decoratedMethodsNotAsync(problems));
}
