import type { CoordinationLogger } from '../observability/logger.js';
import type { LockService } from '../lock/lock.service.js';
import type { ElectionService } from '../election/election.service.js';
import type { JobsService } from '../jobs/jobs.service.js';
import type { ShutdownDrain } from '../shutdown/shutdown-drain.js';
import { InvalidUsageError, ModuleNotInitializedError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';
import type { MethodKind } from './method-wrapper.js';

/** The services a decorated method needs, for one application (internal). */
export interface CoordinationRuntime {
  readonly locks: LockService;
  readonly elections: ElectionService;
  readonly logger: CoordinationLogger;
  /** Once-per-firing jobs (absent in runtimes built without it). */
  readonly jobs?: JobsService;
  /** The application's shutdown drain: decorated calls during it skip (scheduled) or fail with ShutdownError. */
  readonly drain: ShutdownDrain;
}

/** Instances bound by the explorer. A symbol property would show in the user's object; a WeakMap does not. */
const instanceRuntimes = new WeakMap<object, CoordinationRuntime>();
/** Classes of non-singleton providers, bound by class; `null` marks a class bound by two applications. */
const classRuntimes = new WeakMap<Function, CoordinationRuntime | null>();
/** Classes that declare at least one decorated method. */
const decoratedClasses = new WeakSet<Function>();
/** Applications bound right now (to tell "not a provider" from "no CoordinationModule"). */
let boundApplications = 0;
/**
 * How many copies of this library the process has loaded (each copy has its
 * own bindings, so a class decorated by one copy is never bound by another's
 * module: `jest.resetModules()`, or the ESM and CJS builds side by side).
 */
const COPIES = Symbol.for('nest-etcd-coordination:loaded-copies');
const globalCopies = globalThis as { [COPIES]?: number };
globalCopies[COPIES] = (globalCopies[COPIES] ?? 0) + 1;

/** An application started binding its decorated providers (the explorer calls this). */
export function applicationBound(): () => void {
  boundApplications++;
  let done = false;
  return () => {
    if (!done) boundApplications--;
    done = true;
  };
}

export function markDecorated(target: object): void {
  decoratedClasses.add(typeof target === 'function' ? target : target.constructor);
}

/** Whether `instance` (or its class, for non-singletons) has decorated methods anywhere in its prototype chain. */
export function hasDecoratedMethods(prototypeOrInstance: object | null | undefined): boolean {
  for (let proto = prototypeOrInstance; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    if (Object.prototype.hasOwnProperty.call(proto, 'constructor') && decoratedClasses.has(proto.constructor)) return true;
  }
  return false;
}

export function bindInstance(instance: object, runtime: CoordinationRuntime): void {
  instanceRuntimes.set(instance, runtime);
}

export function bindClass(type: Function, runtime: CoordinationRuntime): void {
  const existing = classRuntimes.get(type);
  classRuntimes.set(type, existing === undefined || existing === runtime ? runtime : null);
}

export function unbindClass(type: Function, runtime: CoordinationRuntime): void {
  if (classRuntimes.get(type) === runtime) classRuntimes.delete(type);
}

/**
 * The runtime for a call on `self`. Fails closed: with no bound runtime the
 * decorated method must not run, so this throws an error saying what to fix.
 */
export function resolveRuntime(self: unknown, decorator: string, target: string): CoordinationRuntime {
  if (typeof self === 'object' && self !== null) {
    const bound = instanceRuntimes.get(self);
    if (bound) return bound;
    for (let proto = Object.getPrototypeOf(self); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
      const byClass = classRuntimes.get(proto.constructor);
      if (byClass === null) {
        throw new InvalidUsageError(Messages.ambiguousApplication(decorator, target));
      }
      if (byClass) return byClass;
    }
  }
  // Say the real cause: a second copy of the library, an instance Nest did not create, or no module.
  if ((globalCopies[COPIES] ?? 1) > 1) throw new ModuleNotInitializedError(Messages.secondCopyLoaded(decorator, target));
  if (boundApplications > 0) throw new ModuleNotInitializedError(Messages.notAProvider(decorator, target));
  throw new ModuleNotInitializedError(Messages.moduleMissing(decorator, target));
}

/** `@nestjs/schedule` stores this metadata key on a method it will call (SetMetadata on the function). */
const SCHEDULER_TYPE = 'SCHEDULER_TYPE';

/** The guarded methods of `instance` that also carry @Cron/@Interval/@Timeout metadata ("Class.method()"). */
export function scheduledGuardedMethods(instance: object): string[] {
  const found: string[] = [];
  for (let proto = Object.getPrototypeOf(instance); proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Object.getOwnPropertyNames(proto)) {
      const method = Object.getOwnPropertyDescriptor(proto, key)?.value;
      if (typeof method === 'function' && guardedMethods.has(method) && Reflect.getMetadata(SCHEDULER_TYPE, method) !== undefined) {
        found.push(`${proto.constructor.name}.${key}()`);
      }
    }
  }
  return found;
}

/**
 * Whether `@nestjs/schedule` calls this method (@Cron/@Interval/@Timeout on
 * it, above or below our decorator): during the shutdown drain such a call
 * is a tick to skip, not a caller to answer with ShutdownError.
 */
export function isScheduled(method: Function): boolean {
  return Reflect.getMetadata(SCHEDULER_TYPE, method) !== undefined;
}

/** Wrappers made by @WithLock/@LeaderOnly. */
const guardedMethods = new WeakSet<Function>();

/** Records a wrapper made by one of our decorators. */
export function markGuarded(wrapper: Function): void {
  guardedMethods.add(wrapper);
}

/** What our wrappers return (for a decorator stacked on another), and why one cannot guard its method. */
const wrapperKinds = new WeakMap<Function, MethodKind>();
const wrapperRefusals = new WeakMap<Function, string>();

/** Records what a wrapper returns and, if it cannot work, the bootstrap error's text. */
export function describeWrapper(wrapper: Function, kind: MethodKind, refusal: string | undefined): void {
  wrapperKinds.set(wrapper, kind);
  if (refusal !== undefined) wrapperRefusals.set(wrapper, refusal);
}

export function kindOfWrapper(fn: Function): MethodKind | undefined {
  return wrapperKinds.get(fn);
}

export function refusalOfWrapper(fn: Function): string | undefined {
  return wrapperRefusals.get(fn);
}

/** The refusals of the decorated methods of a class (its prototype chain), e.g. a non-async `@WithLock` method. */
export function guardedMethodRefusals(prototype: object | null | undefined): string[] {
  const found: string[] = [];
  for (let proto = prototype; proto && proto !== Object.prototype; proto = Object.getPrototypeOf(proto)) {
    for (const key of Reflect.ownKeys(proto)) {
      const method = Object.getOwnPropertyDescriptor(proto, key)?.value;
      const refusal = typeof method === 'function' ? wrapperRefusals.get(method) : undefined;
      if (refusal !== undefined && !found.includes(refusal)) found.push(refusal);
    }
  }
  return found;
}
