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

/**
 * Whether a decorated method returns a Promise, as far as can be told before
 * it is called:
 * - `'async'`: an `async function` (or one of our own async wrappers, see
 *   {@link guardedKind}), or its `design:returntype` metadata is Promise (tsc
 *   and SWC emit Promise for every `async` method, also when async is
 *   transpiled to a generator, and for `(): Promise<T>`);
 * - `'sync'`: not an `async function`, and the metadata names anything else:
 *   `void 0` (no annotation, or `: void`), `Object` (`any`, unions,
 *   interfaces), Number, a class... Such a method may still return a Promise
 *   at run time, but nothing says so: `@WithLock` refuses it at bootstrap
 *   ("make it async"). Under SWC (no type check) this is the only check there is;
 *   under tsc `@WithLock`'s own type already refuses most of these;
 * - `'unknown'`: no metadata at all (compiled without emitDecoratorMetadata,
 *   or plain JavaScript): decided on the first call (see `@WithLock`).
 *
 * A wrapper's kind, when `fn` is one of ours, comes from `kindOfWrapper`.
 */
export type MethodKind = 'async' | 'sync' | 'unknown';

const RETURN_TYPE = 'design:returntype';

export function methodKind(fn: Function, target: object, key: string | symbol, kindOfWrapper: (fn: Function) => MethodKind | undefined): MethodKind {
  const own = kindOfWrapper(fn);
  if (own === 'async' || isAsyncFunction(fn)) return 'async';
  if (!Reflect.hasOwnMetadata(RETURN_TYPE, target, key)) return own ?? 'unknown';
  const declared: unknown = Reflect.getOwnMetadata(RETURN_TYPE, target, key);
  const isPromise = declared === Promise || (typeof declared === 'function' && declared.prototype instanceof Promise);
  return isPromise ? 'async' : 'sync';
}

/** What the metadata says a method returns, for messages ("undefined (no return type, or void)", "Number"...). */
export function declaredReturnType(target: object, key: string | symbol): string {
  const declared: unknown = Reflect.getOwnMetadata(RETURN_TYPE, target, key);
  if (declared === undefined) return 'undefined (no return type, or void)';
  return typeof declared === 'function' ? declared.name || 'an anonymous type' : String(declared);
}

export function isThenable(value: unknown): boolean {
  return (typeof value === 'object' || typeof value === 'function') && value !== null && typeof (value as { then?: unknown }).then === 'function';
}
