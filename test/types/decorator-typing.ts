// Compile-time checks, enforced by the build (tsc fails on an unused @ts-expect-error).
import { LeaderOnly, WithLock } from '../../lib/index.js';

export class TypingExamples {
  @WithLock('ok')
  async fine(): Promise<number> {
    return 1;
  }

  // @ts-expect-error: @WithLock needs a method that returns a Promise.
  @WithLock('not-async')
  synchronous(): number {
    return 1;
  }

  // The key function receives the method's arguments, typed.
  @WithLock((orderId: string) => `order:${orderId}`)
  async byArgument(orderId: string): Promise<string> {
    return orderId;
  }

  // @ts-expect-error: the key function's parameters must match the method's.
  @WithLock((orderId: number) => `order:${orderId}`)
  async mismatched(orderId: string): Promise<string> {
    return orderId;
  }

  // @LeaderOnly accepts synchronous and asynchronous methods.
  @LeaderOnly()
  tick(): void {}
}
