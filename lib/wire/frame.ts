/**
 * Length-prefixed framing: every frame is a 4-byte big-endian length followed by that many bytes.
 *
 * The length is checked against a per-connection maximum before a single payload byte is
 * buffered, every read has a deadline, and a connection that ends inside a frame is reported as
 * truncated rather than silently shortened.
 */

import { shortLivedBytes, writeAll } from "../runtime/mod.ts";

/** The byte stream a frame reader needs: `Deno.Conn` and `Deno.TlsConn` fit as they are. */
export interface ByteStream {
  read(p: Uint8Array): Promise<number | null>;
  write(p: Uint8Array): Promise<number>;
  close(): void;
}

/**
 * What went wrong with a frame, for code to branch on (the message is for people):
 *
 * - `oversized`: a length prefix above the limit, refused before any payload is buffered;
 * - `truncated`: the frame, or a field inside it, ends before its declared length (on a stream:
 *   the connection ended in the middle of a frame);
 * - `malformed`: a complete frame whose content does not decode or is not allowed here;
 * - `closed`: the connection is closed, or ended cleanly where a frame was still expected.
 */
export type FrameErrorKind = "oversized" | "truncated" | "malformed" | "closed";

/** Bad input from the peer, or a connection that ended where a frame was due; see `kind`. */
export class FrameError extends Error {
  override name = "FrameError";
  readonly kind: FrameErrorKind;

  /** `kind` defaults to `malformed`, what every protocol-level subclass reports. */
  constructor(message: string, kind: FrameErrorKind = "malformed", options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** A read or write did not finish before its deadline; the connection has been closed. */
export class DeadlineError extends Error {
  override name = "DeadlineError";
}

export const HEADER_BYTES = 4;
/** Default limit for one frame's payload (64 KiB): control messages are far smaller. */
export const DEFAULT_MAX_FRAME = 64 * 1024;
/** Default deadline for one read (10 s). */
export const DEFAULT_READ_TIMEOUT_MS = 10_000;

export interface FramedStreamOptions {
  /** Largest payload accepted, in bytes; checked before buffering. */
  maxFrame?: number;
  /**
   * The read buffer's size (default 64 KiB). Payloads at least this large are read straight into
   * their own buffer; a server holding many connections of small messages (the chat) takes less.
   */
  readBufferBytes?: number;
  /** Deadline for each `readFrame` unless the call gives its own. */
  readTimeoutMs?: number;
  /** Deadline for each `writeFrame`. */
  writeTimeoutMs?: number;
  /**
   * A shorter deadline for the first complete frame only (a server's guard against connections
   * that are opened and held without a word); later reads use their own deadlines.
   */
  firstFrameTimeoutMs?: number;
}

export interface ReadFrameOptions {
  timeoutMs?: number;
  /** A tighter limit for this read only. */
  maxFrame?: number;
}

/** Encodes one frame (header and payload) into a single buffer. */
export function encodeFrame(payload: Uint8Array, maxFrame = DEFAULT_MAX_FRAME): Uint8Array {
  // check: frame-write-limit tests/wire/frame_codec_test.ts
  if (payload.length > maxFrame) {
    throw new RangeError(
      `Frame of ${payload.length} bytes exceeds the limit of ${maxFrame} bytes`,
    );
  }
  const out = new Uint8Array(HEADER_BYTES + payload.length);
  new DataView(out.buffer).setUint32(0, payload.length);
  out.set(payload, HEADER_BYTES);
  return out;
}

/**
 * Splits bytes already in memory (a stream reassembled from a capture) into frames' payloads, the
 * inverse of `encodeFrame`; a frame cut short at the end is left out.
 */
export function splitFrames(bytes: Uint8Array): Uint8Array[] {
  const frames: Uint8Array[] = [];
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  let off = 0;
  while (bytes.length - off >= HEADER_BYTES) {
    const len = view.getUint32(off);
    if (bytes.length - off - HEADER_BYTES < len) break;
    frames.push(bytes.subarray(off + HEADER_BYTES, off + HEADER_BYTES + len));
    off += HEADER_BYTES + len;
  }
  return frames;
}

/** Reads and writes frames on a byte stream, with a bounded buffer and deadlines. */
export class FramedStream {
  readonly #conn: ByteStream;
  readonly #buf: Uint8Array;
  #start = 0;
  #end = 0;
  #closed = false;
  #framesRead = 0;
  readonly maxFrame: number;
  readonly readTimeoutMs: number;
  readonly writeTimeoutMs: number;
  readonly firstFrameTimeoutMs: number | undefined;

  constructor(conn: ByteStream, options: FramedStreamOptions = {}) {
    this.#conn = conn;
    this.#buf = new Uint8Array(options.readBufferBytes ?? 64 * 1024);
    this.maxFrame = options.maxFrame ?? DEFAULT_MAX_FRAME;
    this.readTimeoutMs = options.readTimeoutMs ?? DEFAULT_READ_TIMEOUT_MS;
    this.writeTimeoutMs = options.writeTimeoutMs ?? this.readTimeoutMs;
    this.firstFrameTimeoutMs = options.firstFrameTimeoutMs;
  }

  get closed(): boolean {
    return this.#closed;
  }

  /**
   * Reads one frame's payload. Returns `null` when the peer closed the connection cleanly between
   * frames; throws `FrameError` for an oversized or truncated frame and `DeadlineError` when the
   * deadline passes (the connection is then closed).
   */
  async readFrame(options: ReadFrameOptions = {}): Promise<Uint8Array | null> {
    const limit = Math.min(options.maxFrame ?? this.maxFrame, this.maxFrame);
    let timeoutMs = options.timeoutMs ?? this.readTimeoutMs;
    if (this.#framesRead === 0 && this.firstFrameTimeoutMs !== undefined) {
      timeoutMs = Math.min(timeoutMs, this.firstFrameTimeoutMs);
    }
    return await this.#withDeadline(timeoutMs, "read", async () => {
      const header = new Uint8Array(HEADER_BYTES);
      const got = await this.#readInto(header, true);
      if (got === 0) return null;
      const length = new DataView(header.buffer).getUint32(0);
      // check: frame-read-limit tests/wire/frame_codec_test.ts tests/wire/frame_kind_test.ts
      if (length > limit) {
        throw new FrameError(
          `Frame of ${length} bytes exceeds the limit of ${limit} bytes`,
          "oversized",
        );
      }
      const payload = new Uint8Array(length);
      await this.#readInto(payload, false);
      this.#framesRead++;
      shortLivedBytes(length);
      return payload;
    });
  }

  /** Writes one frame, header and payload in one buffer. */
  async writeFrame(payload: Uint8Array): Promise<void> {
    const frame = encodeFrame(payload, this.maxFrame);
    shortLivedBytes(frame.length);
    await this.#writeAll(frame);
  }

  /**
   * Writes several frames in one go (one buffer, so fewer TLS records and system calls), under
   * one write deadline. Each payload is checked against the limit as `writeFrame` does.
   */
  async writeFrames(payloads: readonly Uint8Array[]): Promise<void> {
    const frames = payloads.map((p) => encodeFrame(p, this.maxFrame));
    const out = new Uint8Array(frames.reduce((n, f) => n + f.length, 0));
    let at = 0;
    for (const f of frames) {
      out.set(f, at);
      at += f.length;
    }
    shortLivedBytes(out.length);
    await this.#writeAll(out);
  }

  async #writeAll(bytes: Uint8Array): Promise<void> {
    await this.#withDeadline(this.writeTimeoutMs, "write", () => writeAll(this.#conn, bytes));
  }

  /** Closes the underlying stream; safe to call more than once. */
  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    try {
      this.#conn.close();
    } catch {
      // Already closed by the peer or by a deadline.
    }
  }

  async #withDeadline<T>(ms: number, what: string, fn: () => Promise<T>): Promise<T> {
    // check: frame-closed-stream tests/wire/frame_kind_test.ts
    if (this.#closed) throw new FrameError("Connection is closed", "closed");
    let expired = false;
    const timer = setTimeout(() => {
      expired = true;
      this.close();
    }, ms);
    try {
      return await fn();
    } catch (err) {
      // check: frame-read-deadline tests/wire/frame_codec_test.ts
      if (expired) {
        throw new DeadlineError(`No ${what} progress within ${formatMs(ms)}: connection closed`);
      }
      throw err;
    } finally {
      clearTimeout(timer);
    }
  }

  /**
   * Fills `dest` completely. Returns the number of bytes read, which is 0 only when `allowEof` and
   * the stream ended before the first byte.
   */
  async #readInto(dest: Uint8Array, allowEof: boolean): Promise<number> {
    let filled = 0;
    while (filled < dest.length) {
      if (this.#start < this.#end) {
        const n = Math.min(this.#end - this.#start, dest.length - filled);
        dest.set(this.#buf.subarray(this.#start, this.#start + n), filled);
        this.#start += n;
        filled += n;
        continue;
      }
      const remaining = dest.length - filled;
      let n: number | null;
      if (remaining >= this.#buf.length) {
        // Large payloads go straight into their destination: no second copy.
        n = await this.#conn.read(dest.subarray(filled));
        if (n !== null) filled += n;
      } else {
        n = await this.#conn.read(this.#buf);
        if (n !== null) {
          this.#start = 0;
          this.#end = n;
        }
      }
      if (n === null) {
        if (filled === 0 && allowEof) return 0;
        throw new FrameError(
          `Connection closed in the middle of a frame (truncated after ${filled} of ${dest.length} bytes)`,
          "truncated",
        );
      }
    }
    return filled;
  }
}

export function formatMs(ms: number): string {
  return ms % 1000 === 0 ? `${ms / 1000} s` : `${ms} ms`;
}
