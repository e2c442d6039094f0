// The Go yardstick (bench/go/yardstick: etcd's own concurrency.Mutex and Election) for the
// bench: scripts/ensure-go.sh, then a cached GOPATH-mode build, both through
// test/support/go-peer.ts (buildGoProgram), whose GoPeer process wrapper is reused too.
// A machine without Go gets { unavailable } and the Go parts are skipped, saying so; it rejects
// only when Go is there and the program does not build.
import path from 'node:path';
import { buildGoProgram, GoPeer, startGoPeer } from '../test/support/go-peer.js';

export type GoBuild = { binary: string; goVersion: string; unavailable?: undefined } | { binary?: undefined; unavailable: string };

/** Builds (or finds in .cache/go-bin) the yardstick for the Go toolchain ensure-go.sh reports. */
export async function prepareYardstick(root: string): Promise<GoBuild> {
  const built = await buildGoProgram(root, path.join(root, 'bench', 'go', 'yardstick'), 'yardstick');
  // The toolchain is there but the program does not build: a real failure, not a skip.
  if (built.buildError !== undefined) throw new Error(built.buildError);
  if (built.unavailable !== undefined) return { unavailable: `Go toolchain not available: ${built.unavailable}` };
  return { binary: built.binary, goVersion: built.goVersion ?? 'unknown' };
}

/** One yardstick process (one Go client, one session). */
export async function startYardstick(binary: string, endpoint: string, id: string, ttl = 10): Promise<GoPeer> {
  const peer = startGoPeer(binary, { endpoint, id, ttl });
  await peer.waitForMessage('ready', 30_000);
  return peer;
}

export type { GoPeer };
