/**
 * One joined chat client on the server: its frames, its bounded outgoing queue and the writer task
 * that drains it (so one slow client never delays the others), and its message rate limit.
 */

import { DeadlineError, formatMs, FramedStream } from "../wire/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";
import { encodeServerMessage, nickKey } from "./protocol.ts";
import type { ChatLimits } from "./limits.ts";

/** Most bytes one write carries when a client's queue holds several frames. */
const BATCH = 64 * 1024;

/** Token bucket: `rate` per second, up to `burst` saved. */
export class RateLimiter {
  readonly #rate: number;
  readonly #burst: number;
  #tokens: number;
  #last = performance.now();

  constructor(rate: number, burst: number) {
    this.#rate = rate;
    this.#burst = Math.max(1, burst);
    this.#tokens = this.#burst;
  }

  take(): boolean {
    const now = performance.now();
    this.#tokens = Math.min(this.#burst, this.#tokens + ((now - this.#last) / 1000) * this.#rate);
    this.#last = now;
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }
}

/** One joined client: its frames, its bounded queue and its writer task. */
export class Member {
  readonly nick: string;
  readonly key: string;
  readonly framed: FramedStream;
  readonly log: StepLog;
  readonly limiter: RateLimiter;
  readonly #maxQueueBytes: number;
  readonly #writeTimeoutMs: number;
  readonly #queue: Uint8Array[] = [];
  #queuedBytes = 0;
  #wake: (() => void) | null = null;
  #closing = false;
  #hardClose: ReturnType<typeof setTimeout> | undefined;
  /** Messages refused in a row for the rate limit. */
  strikes = 0;
  /** Why the writer gave up, when it did. */
  failure: string | null = null;

  constructor(nick: string, framed: FramedStream, log: StepLog, limits: ChatLimits) {
    this.nick = nick;
    this.key = nickKey(nick);
    this.framed = framed;
    this.log = log;
    this.limiter = new RateLimiter(limits.rate, limits.burst);
    this.#maxQueueBytes = limits.maxQueueBytes;
    this.#writeTimeoutMs = limits.writeTimeoutMs;
  }

  /** Queues a frame; false when the queue is full (the caller disconnects this member). */
  enqueue(payload: Uint8Array): boolean {
    if (this.#closing) return true;
    // check: chat-queue-bound tests/chat/queue_test.ts
    if (this.#queuedBytes + payload.length > this.#maxQueueBytes) return false;
    this.#queue.push(payload);
    this.#queuedBytes += payload.length;
    this.#wake?.();
    return true;
  }

  /**
   * Ends this member's session: its queue is replaced by a final `bye` (or kept, to flush what is
   * already queued when `flush`), and the connection closes once written or after `graceMs`.
   */
  finish(reason: string, graceMs: number, flush = false): void {
    if (this.#closing) return;
    if (!flush) {
      this.#queue.length = 0;
      this.#queuedBytes = 0;
    }
    this.#queue.push(encodeServerMessage({ type: "bye", reason }));
    this.#closing = true;
    this.#hardClose = setTimeout(() => this.framed.close(), graceMs);
    this.#wake?.();
  }

  /** Writes queued frames in order, in batches of up to 64 KiB, until the session ends. */
  async writeLoop(): Promise<void> {
    try {
      while (!this.framed.closed) {
        if (this.#queue.length > 0) {
          let n = 0;
          let bytes = 0;
          while (n < this.#queue.length && (n === 0 || bytes + this.#queue[n]!.length <= BATCH)) {
            bytes += this.#queue[n++]!.length;
          }
          const batch = this.#queue.splice(0, n);
          this.#queuedBytes -= bytes;
          await this.framed.writeFrames(batch);
          continue;
        }
        if (this.#closing) break;
        await new Promise<void>((resolve) => (this.#wake = resolve));
        this.#wake = null;
      }
    } catch (err) {
      if (err instanceof DeadlineError) {
        this.failure = `Not reading: no write progress within ${formatMs(this.#writeTimeoutMs)}`;
      } else if (!this.framed.closed) {
        this.failure = `Write failed: ${errorMessage(err)}`;
      }
    } finally {
      clearTimeout(this.#hardClose);
      this.framed.close();
    }
  }
}
