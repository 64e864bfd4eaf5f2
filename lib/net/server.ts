/**
 * The accept loop every TCP actor shares: bounded connections, one task per connection kept in a
 * set, errors of one connection never reaching another, and graceful shutdown on abort.
 */

import { FramedStream, type FramedStreamOptions } from "../wire/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";

export interface ConnectionInfo {
  /** A per-server counter, for log lines. */
  id: number;
  /** `127.0.0.1:54321`. */
  remote: string;
  log: StepLog;
}

export interface ServeOptions<C extends Deno.Conn = Deno.Conn> {
  /** An already bound listener (TCP or TLS). */
  listener: Deno.Listener<C>;
  log: StepLog;
  handler: (conn: C, info: ConnectionInfo) => Promise<void>;
  /** Connections served at once; more are closed at accept. Default 256. */
  maxConnections?: number | undefined;
  signal?: AbortSignal | undefined;
  /** On shutdown, how long connections get to finish before they are closed. Default 2 s. */
  graceMs?: number | undefined;
}

export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  return addr.transport;
}

/** A running server: its address, and a promise that settles when it has stopped. */
export class Server {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly #controller: AbortController;

  constructor(addr: Deno.NetAddr, finished: Promise<void>, controller: AbortController) {
    this.addr = addr;
    this.finished = finished;
    this.#controller = controller;
  }

  get port(): number {
    return this.addr.port;
  }

  /** Stops accepting, lets connections finish within the grace period, then resolves. */
  async close(): Promise<void> {
    this.#controller.abort();
    await this.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Starts the accept loop on `options.listener`. */
export function serve<C extends Deno.Conn>(options: ServeOptions<C>): Server {
  const { listener, log } = options;
  const max = options.maxConnections ?? 256;
  const graceMs = options.graceMs ?? 2000;
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  const active = new Map<C, Promise<void>>();
  let nextId = 1;

  const stop = () => {
    try {
      listener.close();
    } catch {
      // Already closed.
    }
  };
  signal.addEventListener("abort", stop, { once: true });

  const run = async () => {
    try {
      for await (const conn of listener) {
        const id = nextId++;
        const remote = formatAddr(conn.remoteAddr);
        if (active.size >= max) {
          log.warn(`refused connection from ${remote}: ${max} connections already open`);
          conn.close();
          continue;
        }
        const info: ConnectionInfo = { id, remote, log: log.child(`#${id}`) };
        const task = (async () => {
          try {
            await options.handler(conn, info);
          } catch (err) {
            info.log.error(`connection from ${remote} failed: ${errorMessage(err)}`);
          } finally {
            try {
              conn.close();
            } catch {
              // The handler closed it already.
            }
            active.delete(conn);
          }
        })();
        active.set(conn, task);
      }
    } catch (err) {
      if (!signal.aborted) log.error(`accept failed: ${errorMessage(err)}`);
    } finally {
      stop();
    }
    if (active.size > 0) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const grace = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, graceMs);
      });
      await Promise.race([Promise.allSettled(active.values()), grace]);
      clearTimeout(timer);
      for (const conn of active.keys()) {
        try {
          conn.close();
        } catch {
          // Closed meanwhile.
        }
      }
      await Promise.allSettled(active.values());
    }
  };

  return new Server(listener.addr as Deno.NetAddr, run(), controller);
}

export interface FramedServeOptions {
  hostname?: string | undefined;
  port: number;
  log: StepLog;
  /** Frame limit and deadlines of each connection's stream. */
  stream: FramedStreamOptions;
  /** The raw connection is there for shutting it down gently (`closeWrite`). */
  handler: (stream: FramedStream, info: ConnectionInfo, conn: Deno.Conn) => Promise<void>;
  maxConnections?: number | undefined;
  signal?: AbortSignal | undefined;
  graceMs?: number | undefined;
}

/**
 * A TCP server whose connections speak length-prefixed frames (the CA, Blackboard, the bank):
 * listens on `hostname:port` (default 127.0.0.1), wraps each connection in a `FramedStream`, and
 * closes it when the handler returns.
 */
export function serveFramed(options: FramedServeOptions): Server {
  const listener = Deno.listen({ hostname: options.hostname ?? "127.0.0.1", port: options.port });
  return serve({
    listener,
    log: options.log,
    signal: options.signal,
    maxConnections: options.maxConnections,
    graceMs: options.graceMs,
    handler: async (conn, info) => {
      const stream = new FramedStream(conn, options.stream);
      try {
        await options.handler(stream, info, conn);
      } finally {
        stream.close();
      }
    },
  });
}
