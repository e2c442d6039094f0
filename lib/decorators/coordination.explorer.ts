import { Injectable, Logger, type OnApplicationShutdown, type OnModuleInit } from '@nestjs/common';
import { DiscoveryService } from '@nestjs/core';
import { LockService } from '../lock/lock.service.js';
import { ElectionService } from '../election/election.service.js';
import {
  bindClass,
  bindInstance,
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

  constructor(
    private readonly discovery: DiscoveryService,
    locks: LockService,
    elections: ElectionService,
  ) {
    this.runtime = { locks, elections, logger: new Logger('Coordination') };
  }

  onModuleInit(): void {
    for (const wrapper of [...this.discovery.getProviders(), ...this.discovery.getControllers()]) {
      const { instance, metatype } = wrapper;
      const isSingleton = wrapper.isDependencyTreeStatic() && !wrapper.isTransient;
      if (isSingleton) {
        if (!instance || typeof instance !== 'object' || !hasDecoratedMethods(instance)) continue;
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
  }

  onApplicationShutdown(): void {
    for (const type of this.boundClasses.splice(0)) unbindClass(type, this.runtime);
  }
}
