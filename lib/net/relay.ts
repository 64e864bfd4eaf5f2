/**
 * Trudy's position on the path: a TCP relay between a client and a server on loopback (the client
 * is pointed at the relay's port). Every protocol of systems 1 and 2 is length-prefixed, so the
 * relay works per frame: each frame can be read, kept, changed, dropped, or followed by frames of
 * Trudy's own.
 */

import { errorMessage, type HostPort, type StepLog, writeAll } from "../runtime/mod.ts";
import { encodeFrame, FramedStream, FrameError, HEADER_BYTES } from "../wire/mod.ts";
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
  /** Whether this relayed connection has ended. */
  readonly closed: boolean;
}

/** What a frame handler returns: one frame, several frames in order, or `null` (drop it). */
export type FrameResult = Uint8Array | readonly Uint8Array[] | null;

/**
 * Decides what happens to one frame: return it (or a changed copy) to forward it, `null` to drop
 * it, or several frames to send in its place (a copy, a held frame). Frames are handled in order
 * per direction; `index` counts this direction's frames on this connection from 0.
 */
export type FrameHandler = (
  direction: Direction,
  frame: Uint8Array,
  session: RelaySession,
  index: number,
) => Promise<FrameResult> | FrameResult;

/** Options that can differ per relayed connection. */
export interface ConnectionOptions {
  /**
   * Cut both directions once this many bytes (headers included) went to the server: the last
   * frame is cut in the middle, as a broken connection would.
   */
  cutAfterBytes?: number;
}

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
  /** Called when a client connects, before any frame (e.g. to set up per-connection state). */
  onOpen?: (session: RelaySession) => void;
  /**
   * Called once per direction when that side stops sending: `toClient` when the server's side
   * ends, `toServer` when the client's does. The first call says who ended the connection.
   */
  onEnd?: (direction: Direction, session: RelaySession) => void;
  /** Called once when a relayed connection has ended in both directions. */
  onClose?: (session: RelaySession) => void;
  /** Per-connection options, by connection index (1, 2, …). */
  connection?: (id: number) => ConnectionOptions | undefined;
  /**
   * When the client ends its side cleanly, end only the server's side for writing and keep
   * relaying the server's last frames (a refusal, say) until it closes. Default: close both.
   */
  halfClose?: boolean;
  /** On close, how long relayed connections get to finish (default 0: cut at once). */
  graceMs?: number;
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
    graceMs: options.graceMs ?? 0,
    handler: async (conn, { id, log }) => {
      const upstreamConn = await Deno.connect(options.upstream);
      const client = new FramedStream(conn, streamOptions);
      const server = new FramedStream(upstreamConn, streamOptions);
      const perConnection = options.connection?.(id) ?? {};
      let closed = false;
      let sentToServer = 0;
      const closeAll = () => {
        closed = true;
        client.close();
        server.close();
      };
      const session: RelaySession = {
        id,
        inject: async (direction, frame) => {
          await (direction === "toServer" ? server : client).writeFrame(frame);
        },
        close: closeAll,
        get closed() {
          return closed;
        },
      };
      options.onOpen?.(session);
      /** Writes one frame toward the server, or its first bytes when the cut is reached. */
      const toServer = async (frame: Uint8Array): Promise<boolean> => {
        const cut = perConnection.cutAfterBytes;
        // check: relay-cut-after-bytes tests/blackboard/upload_test.ts
        if (cut !== undefined && sentToServer + HEADER_BYTES + frame.length >= cut) {
          const bytes = encodeFrame(frame, streamOptions.maxFrame).subarray(0, cut - sentToServer);
          await writeAll(upstreamConn, bytes);
          log.info(`relay: connection cut after ${cut} bytes to the server`);
          return false;
        }
        sentToServer += HEADER_BYTES + frame.length;
        await server.writeFrame(frame);
        return true;
      };
      const pump = async (direction: Direction, from: FramedStream, to: FramedStream) => {
        let index = 0;
        let halfClosed = false;
        try {
          for (;;) {
            const frame = await from.readFrame();
            if (frame === null) {
              if (direction === "toServer" && options.halfClose) {
                await upstreamConn.closeWrite().catch(() => {});
                halfClosed = true;
              }
              break;
            }
            const result = options.onFrame
              ? await options.onFrame(direction, frame, session, index++)
              : frame;
            const out = result === null ? [] : result instanceof Uint8Array ? [result] : result;
            for (const f of out) {
              if (direction === "toClient") await to.writeFrame(f);
              else if (!(await toServer(f))) return;
            }
          }
        } catch (err) {
          if (!(err instanceof FrameError) && !from.closed && !to.closed) {
            log.warn(`relay ${direction}: ${errorMessage(err)}`);
          }
        } finally {
          options.onEnd?.(direction, session);
          if (!halfClosed) closeAll();
        }
      };
      try {
        await Promise.all([
          pump("toServer", client, server),
          pump("toClient", server, client),
        ]);
      } finally {
        closeAll();
        options.onClose?.(session);
      }
    },
  });
}
