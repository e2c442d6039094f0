import type { Logger } from '@nestjs/common';
import type { LockService } from '../lock/lock.service.js';
import type { ElectionService } from '../election/election.service.js';
import { InvalidUsageError, ModuleNotInitializedError } from '../errors/coordination.errors.js';
import { Messages } from '../coordination.messages.js';

/** The services a decorated method needs, for one application (internal). */
export interface CoordinationRuntime {
  readonly locks: LockService;
  readonly elections: ElectionService;
  readonly logger: Logger;
}

/** Instances bound by the explorer. A symbol property would show in the user's object; a WeakMap does not. */
const instanceRuntimes = new WeakMap<object, CoordinationRuntime>();
/** Classes of non-singleton providers, bound by class; `null` marks a class bound by two applications. */
const classRuntimes = new WeakMap<Function, CoordinationRuntime | null>();
/** Classes that declare at least one decorated method. */
const decoratedClasses = new WeakSet<Function>();

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
  throw new ModuleNotInitializedError(Messages.moduleMissing(decorator, target));
}
