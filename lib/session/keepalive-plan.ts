/** Keepalive timing, all derived from the granted TTL (ms). See {@link keepAlivePlan}. */
export interface KeepAlivePlan {
  /** Declared-lost this much before `send time + TTL`. */
  marginMs: number;
  /** Regular spacing of keepalives on a fast link (TTL/3, as etcd's Go client). */
  periodMs: number;
  /** Never closer than this (keepalives stay cheap even when the deadline is near). */
  minGapMs: number;
  /** Round trips this much longer than the worst one measured recently still arrive in time. */
  rttFactor: number;
}

/**
 * The keepalive rule (documented next to `sessionTtl` in docs/faults.md):
 *
 * - deadline = send time of the last acknowledged keepalive + TTL - margin,
 *   margin = min(500 ms, TTL/10);
 * - keepalives are pipelined (the next one never waits for an answer), and the
 *   next goes out at min(last send + gap, deadline - 1.5 x RTT), never sooner
 *   than 200 ms after the last one, where RTT is the slowest of the last round
 *   trips (or the age of the oldest unanswered keepalive, when that is longer)
 *   and gap = TTL/3, shrunk to TTL - margin - 1.5 x RTT on slow links;
 * - a new session sends its first keepalive as soon as the grant is answered.
 *
 * So an established session survives round trips up to about
 * TTL - margin - 200 ms (if they grow gradually), and a new one needs
 * grant round trip + keepalive round trip < TTL - margin, i.e. RTT below
 * (TTL - margin) / 2: 1.35 s for TTL 3 s, 4.75 s for TTL 10 s.
 */
export function keepAlivePlan(ttlSeconds: number): KeepAlivePlan {
  const ttlMs = ttlSeconds * 1000;
  return { marginMs: Math.min(500, ttlMs / 10), periodMs: Math.max(200, Math.floor(ttlMs / 3)), minGapMs: 200, rttFactor: 1.5 };
}
