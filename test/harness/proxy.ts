// A TCP proxy on a free loopback port in front of host:port, for network fault tests.
//
//   const proxy = await startProxy(etcd.endpoint);
//   const client = new Etcd3({ hosts: proxy.endpoint });
//   proxy.blackhole();   // connections stay open, every byte is dropped (a partition)
//   proxy.reset();       // every connection is reset, new ones too (a crashed peer / RST)
//   proxy.delay(200);    // each chunk is forwarded 200 ms late (a slow link)
//   proxy.pass();        // back to normal
//   await proxy.close();
//
// Mode changes apply to existing connections immediately. Backpressure is deliberately
// ignored (test traffic is small); chunk order per direction is always preserved.
import net from 'node:net';

import { registerCleanup } from './cleanup.js';

const HOST = '127.0.0.1';

export type ProxyMode = { kind: 'pass' } | { kind: 'blackhole' } | { kind: 'reset' } | { kind: 'delay'; ms: number };

export interface TcpProxy {
  readonly host: string;
  readonly port: number;
  /** "127.0.0.1:PORT". */
  readonly endpoint: string;
  readonly target: { host: string; port: number };
  readonly mode: ProxyMode;
  /** Number of client connections currently open. */
  readonly connectionCount: number;
  setMode(mode: ProxyMode): void;
  pass(): void;
  blackhole(): void;
  reset(): void;
  delay(ms: number): void;
  /** Destroys (RST) all current connections but keeps the mode: a one-off connection drop. */
  dropConnections(): void;
  /** Stops listening and destroys every connection. Idempotent. */
  close(): Promise<void>;
}

interface Pair {
  client: net.Socket;
  upstream: net.Socket;
}

class Proxy implements TcpProxy {
  private currentMode: ProxyMode = { kind: 'pass' };
  private readonly pairs = new Set<Pair>();
  private closePromise: Promise<void> | undefined;
  private readonly unregister: () => void;

  constructor(
    private readonly server: net.Server,
    readonly target: { host: string; port: number },
  ) {
    server.on('connection', (client) => this.accept(client));
    // A forgotten proxy must not keep the test file alive; open connections still do.
    server.unref();
    // At exit the sockets die with the process; only the listener registration matters.
    this.unregister = registerCleanup(() => server.close());
  }

  get host(): string {
    return HOST;
  }
  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }
  get endpoint(): string {
    return `${HOST}:${this.port}`;
  }
  get mode(): ProxyMode {
    return this.currentMode;
  }
  get connectionCount(): number {
    return this.pairs.size;
  }

  setMode(mode: ProxyMode): void {
    if (mode.kind === 'delay' && !(mode.ms >= 0)) throw new RangeError(`delay must be >= 0 ms, got ${mode.ms}`);
    this.currentMode = mode;
    if (mode.kind === 'reset') this.dropConnections();
  }
  pass(): void {
    this.setMode({ kind: 'pass' });
  }
  blackhole(): void {
    this.setMode({ kind: 'blackhole' });
  }
  reset(): void {
    this.setMode({ kind: 'reset' });
  }
  delay(ms: number): void {
    this.setMode({ kind: 'delay', ms });
  }

  dropConnections(): void {
    for (const pair of [...this.pairs]) this.destroyPair(pair);
  }

  close(): Promise<void> {
    this.closePromise ??= new Promise<void>((resolve) => {
      this.server.close(() => resolve());
      this.dropConnections();
      this.unregister();
    });
    return this.closePromise;
  }

  private accept(client: net.Socket): void {
    if (this.currentMode.kind === 'reset') {
      client.on('error', () => {});
      client.resetAndDestroy();
      return;
    }
    client.setNoDelay(true);
    const upstream = net.connect({ host: this.target.host, port: this.target.port });
    upstream.setNoDelay(true);
    const pair: Pair = { client, upstream };
    this.pairs.add(pair);
    this.forward(client, upstream);
    this.forward(upstream, client);
    // Whatever ends one side ends the other; errors (ECONNRESET, ECONNREFUSED) are expected here.
    const teardown = (): void => this.destroyPair(pair);
    for (const socket of [client, upstream]) {
      socket.on('error', teardown);
      socket.on('close', teardown);
    }
  }

  /** Copies `from` to `to`, consulting the mode for every chunk. */
  private forward(from: net.Socket, to: net.Socket): void {
    // Delayed chunks are chained so a later chunk can never overtake an earlier one, even
    // when the mode changes from delay back to pass in between.
    let queue: Promise<void> = Promise.resolve();
    let queued = 0;
    from.on('data', (chunk: Buffer) => {
      const mode = this.currentMode;
      if (mode.kind === 'blackhole' || mode.kind === 'reset') return;
      if (mode.kind === 'pass' && queued === 0) {
        if (!to.destroyed) to.write(chunk);
        return;
      }
      const releaseAt = Date.now() + (mode.kind === 'delay' ? mode.ms : 0);
      queued++;
      queue = queue.then(async () => {
        const wait = releaseAt - Date.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        queued--;
        // Chunks that were in flight when a blackhole/reset began are dropped too.
        const now = this.currentMode.kind;
        if (!to.destroyed && now !== 'blackhole' && now !== 'reset') to.write(chunk);
      });
    });
    from.on('end', () => {
      void queue.then(() => {
        if (!to.destroyed) to.end();
      });
    });
  }

  private destroyPair(pair: Pair): void {
    if (!this.pairs.delete(pair)) return;
    // RST rather than FIN: the client sees an abrupt failure, like a crashed server.
    // But never resetAndDestroy() a socket whose graceful shutdown (end()) already started:
    // that races the pending shutdown request and can leave the native handle open and
    // spinning, so the test process never exits (seen on Node 20). destroy() is safe there.
    for (const socket of [pair.client, pair.upstream]) {
      if (socket.destroyed) continue;
      if (!socket.writableEnded && !socket.connecting) socket.resetAndDestroy();
      else socket.destroy();
    }
  }
}

/** Starts a proxy to `target` ("host:port" or {host, port}) listening on 127.0.0.1:<free port>. */
export async function startProxy(target: string | { host: string; port: number }): Promise<TcpProxy> {
  const parsed = typeof target === 'string' ? parseHostPort(target) : target;
  const server = net.createServer({ pauseOnConnect: false });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, HOST, () => {
      server.off('error', reject);
      resolve();
    });
  });
  return new Proxy(server, parsed);
}

function parseHostPort(value: string): { host: string; port: number } {
  const withoutScheme = value.replace(/^[a-z]+:\/\//i, '');
  const match = /^(.*):(\d+)$/.exec(withoutScheme);
  if (!match) throw new Error(`expected host:port, got ${value}`);
  return { host: match[1]!.replace(/^\[|\]$/g, ''), port: Number(match[2]) };
}
