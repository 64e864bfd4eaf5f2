/**
 * The accept loop every TCP actor shares: bounded connections, one task per connection kept in a
 * set, errors of one connection never reaching another, and graceful shutdown on abort.
 */

import { FramedStream, type FramedStreamOptions } from "../wire/mod.ts";
import { errorMessage, parsePositiveInt, type StepLog } from "../runtime/mod.ts";

export interface ConnectionInfo {
  /** A per-server counter, for log lines. */
  id: number;
  /** `127.0.0.1:54321`. */
  remote: string;
  log: StepLog;
  /** Aborted when the server starts to stop: a session may tell its peer and finish. */
  stopping: AbortSignal;
}

export interface ServeOptions<C extends Deno.Conn = Deno.Conn> {
  /** An already bound listener (TCP or TLS). */
  listener: Deno.Listener<C>;
  log: StepLog;
  handler: (conn: C, info: ConnectionInfo) => Promise<void>;
  /**
   * Connections served at once; more are closed at accept. Default 256, and never more than the
   * process's file limit leaves room for.
   */
  maxConnections?: number | undefined;
  /** Connections one address may hold at once; more are closed at accept. Default 16. */
  maxPerAddress?: number | undefined;
  signal?: AbortSignal | undefined;
  /** On shutdown, how long connections get to finish before they are closed. Default 2 s. */
  graceMs?: number | undefined;
}

/**
 * How long a framed server waits for a connection's first complete frame, separate from (and
 * shorter than) the session's deadlines: a held, silent connection is let go quickly.
 */
export const FIRST_FRAME_TIMEOUT_MS = 2_000;

/** Connections per address, unless configured: one host cannot lock everyone else out. */
export const DEFAULT_MAX_PER_ADDRESS = 16;
/** File descriptors kept free for everything that is not a connection (files, the database). */
const FD_RESERVE = 64;

export function formatAddr(addr: Deno.Addr): string {
  if (addr.transport === "tcp" || addr.transport === "udp") {
    return addr.hostname.includes(":")
      ? `[${addr.hostname}]:${addr.port}`
      : `${addr.hostname}:${addr.port}`;
  }
  return addr.transport;
}

/**
 * The process's open-file limit (the soft `ulimit -n`), from /proc/self/limits; undefined where it
 * cannot be read: Deno lets only fully privileged processes read /proc/self, so under the tasks'
 * scoped permissions the accept loop learns the limit instead, the first time accept() hits it.
 */
export function openFileLimit(): number | undefined {
  try {
    const text = Deno.readTextFileSync("/proc/self/limits");
    const m = /^Max open files\s+(\d+|unlimited)/m.exec(text);
    if (!m || m[1] === "unlimited") return undefined;
    return Number(m[1]);
  } catch {
    return undefined;
  }
}

/**
 * Log lines that could flood the log (refusals at capacity, accept errors): the first of each kind
 * in an interval is written, the rest are counted and summarised once at the end of the interval
 * ("refused 1234 connections at capacity in the last 10 s").
 */
export class LogSummary {
  readonly #log: StepLog;
  readonly #intervalMs: number;
  readonly #counts = new Map<string, number>();
  #timer: ReturnType<typeof setTimeout> | undefined;

  constructor(log: StepLog, intervalMs = 10_000) {
    this.#log = log;
    this.#intervalMs = intervalMs;
  }

  /** Counts one event of `kind`; writes `line` if it is the first of its kind in the interval. */
  note(kind: string, line: string): void {
    const n = this.#counts.get(kind);
    if (n === undefined) {
      this.#log.warn(`${line} (more like this are summarised every ${this.#intervalMs / 1000} s)`);
      this.#counts.set(kind, 0);
    } else {
      this.#counts.set(kind, n + 1);
    }
    this.#timer ??= setTimeout(() => this.flush(), this.#intervalMs);
  }

  /** Writes the summary of the interval so far, and starts a new one. */
  flush(): void {
    if (this.#timer !== undefined) clearTimeout(this.#timer);
    this.#timer = undefined;
    const seconds = this.#intervalMs / 1000;
    for (const [kind, n] of this.#counts) {
      if (n > 0) this.#log.warn(`${kind}: ${n} more in the last ${seconds} s`);
    }
    this.#counts.clear();
  }
}

/** The connection limits a server applies (the global cap may drop if the file limit is hit). */
export interface ServerLimits {
  maxConnections: number;
  maxPerAddress: number;
  /** The open-file limit, where the process may read it. */
  fileLimit: number | undefined;
}

/** One log line for a server's limits, for the actors to print at start. */
export function describeLimits(limits: ServerLimits): string {
  return `at most ${limits.maxConnections} connections at once, ${limits.maxPerAddress} per address; ` +
    (limits.fileLimit === undefined
      ? "open-file limit not readable under these permissions (learnt if accept() hits it)"
      : `open-file limit ${limits.fileLimit}`);
}

/** A running server: its address, and a promise that settles when it has stopped. */
export class Server {
  readonly addr: Deno.NetAddr;
  readonly finished: Promise<void>;
  readonly limits: ServerLimits;
  readonly #controller: AbortController;

  constructor(
    addr: Deno.NetAddr,
    finished: Promise<void>,
    controller: AbortController,
    limits: ServerLimits = { maxConnections: 256, maxPerAddress: 16, fileLimit: undefined },
  ) {
    this.addr = addr;
    this.finished = finished;
    this.limits = limits;
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

/** Errors of `accept()` that end the loop: the listener itself is gone. */
function listenerGone(err: unknown): boolean {
  return err instanceof Deno.errors.BadResource || err instanceof Deno.errors.Interrupted;
}

/**
 * Starts the accept loop on `options.listener`. An accept error (EMFILE, ENFILE, ECONNABORTED…)
 * never stops it: the error is logged at most once a second, the loop backs off briefly and
 * goes on accepting. Connections over the global cap or over the per-address cap are closed at
 * once, and those refusals are summarised rather than logged one by one.
 */
export function serve<C extends Deno.Conn>(options: ServeOptions<C>): Server {
  const { listener, log } = options;
  const fileLimit = openFileLimit();
  const wanted = options.maxConnections ?? 256;
  let max = fileLimit === undefined
    ? wanted
    : Math.max(1, Math.min(wanted, fileLimit - FD_RESERVE));
  const perAddress = options.maxPerAddress ?? DEFAULT_MAX_PER_ADDRESS;
  const limits: ServerLimits = { maxConnections: max, maxPerAddress: perAddress, fileLimit };
  const graceMs = options.graceMs ?? 2000;
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  const active = new Map<C, Promise<void>>();
  const perHost = new Map<string, number>();
  const refusals = new LogSummary(log);
  const acceptErrors = new LogSummary(log, 1000);
  let nextId = 1;

  const stop = () => {
    try {
      listener.close();
    } catch {
      // Already closed.
    }
  };
  signal.addEventListener("abort", stop, { once: true });

  const refuse = (conn: C, kind: string, line: string) => {
    refusals.note(kind, line);
    try {
      conn.close();
    } catch {
      // Gone already.
    }
  };

  const run = async () => {
    let backoffMs = 0;
    try {
      while (!signal.aborted) {
        let conn: C;
        try {
          conn = await listener.accept();
          backoffMs = 0;
        } catch (err) {
          if (signal.aborted || listenerGone(err)) break;
          // Out of file descriptors: the limit is where we are now. Cap below it, so that later
          // connections are refused at accept instead of failing it.
          if (/too many open files/i.test(errorMessage(err)) && active.size > 1) {
            const cap = Math.max(
              1,
              active.size - Math.min(FD_RESERVE, Math.floor(active.size / 4)),
            );
            if (cap < max) {
              max = cap;
              limits.maxConnections = cap;
              log.warn(`out of file descriptors at ${active.size} connections: capping at ${cap}`);
            }
          }
          acceptErrors.note(
            "accept failed",
            `accept failed: ${errorMessage(err)}; still accepting`,
          );
          backoffMs = Math.min(Math.max(backoffMs * 2, 10), 1000);
          await new Promise((r) => setTimeout(r, backoffMs));
          continue;
        }
        const id = nextId++;
        const remote = formatAddr(conn.remoteAddr);
        const host = (conn.remoteAddr as Deno.NetAddr).hostname ?? remote;
        // check: connection-cap tests/net/limits_test.ts
        if (active.size >= max) {
          refuse(
            conn,
            "refused connections at capacity",
            `refused connection from ${remote}: ${max} connections already open`,
          );
          continue;
        }
        const held = perHost.get(host) ?? 0;
        // check: per-address-cap tests/net/limits_test.ts
        if (held >= perAddress) {
          refuse(
            conn,
            `refused connections over the per-address cap`,
            `refused connection from ${remote}: ${perAddress} connections from ${host} already open`,
          );
          continue;
        }
        perHost.set(host, held + 1);
        const info: ConnectionInfo = { id, remote, log: log.child(`#${id}`), stopping: signal };
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
            const left = (perHost.get(host) ?? 1) - 1;
            if (left > 0) perHost.set(host, left);
            else perHost.delete(host);
          }
        })();
        active.set(conn, task);
      }
    } finally {
      stop();
      refusals.flush();
      acceptErrors.flush();
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

  return new Server(listener.addr as Deno.NetAddr, run(), controller, limits);
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
  maxPerAddress?: number | undefined;
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
    maxPerAddress: options.maxPerAddress,
    graceMs: options.graceMs,
    handler: async (conn, info) => {
      const stream = new FramedStream(conn, {
        firstFrameTimeoutMs: FIRST_FRAME_TIMEOUT_MS,
        ...options.stream,
      });
      try {
        await options.handler(stream, info, conn);
      } finally {
        stream.close();
      }
    },
  });
}

/** A free TCP port on 127.0.0.1 (bound, read and released at once). */
export function freePort(): number {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  return listener.addr.port;
}

/** The `--max-per-address N` option every server actor takes. */
export const MAX_PER_ADDRESS_OPTION = { "max-per-address": { type: "string" } } as const;

/** The option's line in a server's --help. */
export const MAX_PER_ADDRESS_USAGE =
  `  --max-per-address N  connections one address may hold at once (default ${DEFAULT_MAX_PER_ADDRESS})`;

/** `--max-per-address`'s value as server options (nothing when the option was not given). */
export function maxPerAddressOption(text: string | undefined): { maxPerAddress?: number } {
  return text === undefined
    ? {}
    : { maxPerAddress: parsePositiveInt(text, "max-per-address", 65_536) };
}
