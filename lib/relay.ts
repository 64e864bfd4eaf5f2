/**
 * Trudy's position on the path: a TCP relay between a client and a server on loopback (the client
 * is pointed at the relay's port). Every protocol of systems 1 and 2 is length-prefixed, so the
 * relay works per frame: each frame can be read, kept, changed, dropped, or followed by frames of
 * Trudy's own.
 */

import type { HostPort } from "./cli.ts";
import { FramedStream, FrameError } from "./frame.ts";
import { errorMessage, type StepLog } from "./log.ts";
import { serve, type Server } from "./server.ts";

export type Direction = "toServer" | "toClient";

/** What the relay lets a frame handler do on one relayed connection. */
export interface RelaySession {
  /** Index of this connection through the relay (1, 2, …). */
  readonly id: number;
  /** Sends a frame of Trudy's own in a direction. */
  inject(direction: Direction, frame: Uint8Array): Promise<void>;
  /** Ends this relayed connection (both sides). */
  close(): void;
}

/**
 * Decides what happens to one frame: return it (or a changed copy) to forward it, `null` to drop
 * it. Frames are handled in order per direction.
 */
export type FrameHandler = (
  direction: Direction,
  frame: Uint8Array,
  session: RelaySession,
) => Promise<Uint8Array | null> | Uint8Array | null;

export interface RelayOptions {
  upstream: HostPort;
  log: StepLog;
  /** Port to listen on (0 picks one). */
  port?: number;
  hostname?: string;
  onFrame?: FrameHandler;
  maxFrame?: number;
  /** Idle deadline per direction (default 60 s). */
  readTimeoutMs?: number;
  signal?: AbortSignal;
}

/** Starts the relay; each client connection is paired with a fresh upstream connection. */
export function startRelay(options: RelayOptions): Server {
  const listener = Deno.listen({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
  });
  const streamOptions = {
    maxFrame: options.maxFrame ?? 4 * 1024 * 1024,
    readTimeoutMs: options.readTimeoutMs ?? 60_000,
  };
  return serve({
    listener,
    log: options.log,
    ...(options.signal ? { signal: options.signal } : {}),
    handler: async (conn, { id, log }) => {
      const upstreamConn = await Deno.connect(options.upstream);
      const client = new FramedStream(conn, streamOptions);
      const server = new FramedStream(upstreamConn, streamOptions);
      const closeAll = () => {
        client.close();
        server.close();
      };
      const session: RelaySession = {
        id,
        inject: async (direction, frame) => {
          await (direction === "toServer" ? server : client).writeFrame(frame);
        },
        close: closeAll,
      };
      const pump = async (direction: Direction, from: FramedStream, to: FramedStream) => {
        try {
          for (;;) {
            const frame = await from.readFrame();
            if (frame === null) break;
            const out = options.onFrame ? await options.onFrame(direction, frame, session) : frame;
            if (out !== null) await to.writeFrame(out);
          }
        } catch (err) {
          if (!(err instanceof FrameError) && !from.closed && !to.closed) {
            log.warn(`relay ${direction}: ${errorMessage(err)}`);
          }
        } finally {
          closeAll();
        }
      };
      await Promise.all([
        pump("toServer", client, server),
        pump("toClient", server, client),
      ]);
    },
  });
}
