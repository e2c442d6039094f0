import 'reflect-metadata';
import { markGuarded } from './coordination.runtime.js';

/**
 * Replaces a method with `wrapper` so that decorators applied before us
 * (e.g. `@Cron`, which stores metadata ON the function) keep working:
 * copies every Reflect metadata key, the name and own properties.
 * Decorators applied after us write onto the wrapper itself.
 */
export function replaceMethod(
  descriptor: PropertyDescriptor,
  wrap: (original: (...args: unknown[]) => unknown) => (this: unknown, ...args: unknown[]) => unknown,
): PropertyDescriptor {
  const original = descriptor.value as (...args: unknown[]) => unknown;
  const wrapper = wrap(original);
  for (const key of Reflect.getOwnMetadataKeys(original)) {
    Reflect.defineMetadata(key, Reflect.getOwnMetadata(key, original), wrapper);
  }
  for (const key of Reflect.ownKeys(original)) {
    if (key === 'length' || key === 'prototype' || key === 'caller' || key === 'arguments') continue;
    const property = Object.getOwnPropertyDescriptor(original, key);
    if (property) Object.defineProperty(wrapper, key, property);
  }
  markGuarded(wrapper);
  descriptor.value = wrapper;
  return descriptor;
}

export function describeTarget(target: object, key: string | symbol): string {
  const className = typeof target === 'function' ? target.name : target.constructor?.name ?? 'anonymous';
  return `${className}.${String(key)}()`;
}

export function isAsyncFunction(fn: Function): boolean {
  return fn.constructor?.name === 'AsyncFunction';
}
