/**
 * Handshakes, rate-limited per remote host. A handshake makes the server sign before anyone is
 * authenticated (Bob's proof after `Hello` and `prove it`, Blackboard's step 4), so one host may
 * start at most `rate` handshakes a second, with bursts up to `burst` (a token bucket per host).
 *
 * A host over its rate is refused before the server reads a byte, after a pause (the tarpit, 1 s):
 * a flood's connections then wait instead of coming straight back, and since each holds one of its
 * own host's connection slots (the per-address cap), one host cannot make the server spend more
 * than a few refusals a second on it. Everyone else's handshakes are not delayed by it.
 */

import { parsePositiveInt, type StepLog } from "../runtime/mod.ts";
import { LogSummary } from "./server.ts";

/** Handshakes a host may start per second, unless configured. */
export const DEFAULT_HANDSHAKE_RATE = 20;
/** Handshakes a host may start at once after a quiet spell, unless configured. */
export const DEFAULT_HANDSHAKE_BURST = 40;
/** How long a connection over the rate waits before its refusal. */
export const TARPIT_MS = 1000;
/** Hosts remembered at most; the buckets that are full again are forgotten first. */
const MAX_HOSTS = 10_000;

export interface HandshakeLimit {
  /** Handshakes per second per host (tokens added per second). */
  rate: number;
  /** Bucket size: handshakes a host may start at once. */
  burst: number;
}

/** One token bucket per remote host. */
export class HandshakeRateLimiter {
  readonly rate: number;
  readonly burst: number;
  readonly #now: () => number;
  readonly #buckets = new Map<string, { tokens: number; at: number }>();

  constructor(limit: Partial<HandshakeLimit> = {}, now: () => number = Date.now) {
    this.rate = limit.rate ?? DEFAULT_HANDSHAKE_RATE;
    this.burst = limit.burst ?? DEFAULT_HANDSHAKE_BURST;
    if (!(this.rate > 0) || !(this.burst >= 1)) {
      throw new RangeError("A handshake limit needs a rate above 0 and a burst of at least 1");
    }
    this.#now = now;
  }

  /** Takes one handshake for `host`: false when the host is over its rate (refuse it). */
  take(host: string): boolean {
    const now = this.#now();
    const bucket = this.#buckets.get(host) ?? { tokens: this.burst, at: now };
    bucket.tokens = Math.min(this.burst, bucket.tokens + ((now - bucket.at) / 1000) * this.rate);
    bucket.at = now;
    this.#buckets.delete(host);
    this.#buckets.set(host, bucket);
    if (this.#buckets.size > MAX_HOSTS) this.#forget(now);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }

  /** Forgets the hosts whose buckets are full again (nothing to remember), oldest first. */
  #forget(now: number): void {
    for (const [host, b] of this.#buckets) {
      if (this.#buckets.size <= MAX_HOSTS / 2) break;
      if (b.tokens + ((now - b.at) / 1000) * this.rate >= this.burst) this.#buckets.delete(host);
    }
    // Still too many (a flood from many hosts): drop the least recently seen.
    for (const host of this.#buckets.keys()) {
      if (this.#buckets.size <= MAX_HOSTS) break;
      this.#buckets.delete(host);
    }
  }
}

export interface HandshakeGateOptions {
  /** Pause before a refusal over the rate (default `TARPIT_MS`). */
  tarpitMs?: number;
  /** For tests: the clock of the token buckets. */
  now?: () => number;
}

/** The rate limit at the start of each connection, with its summarised log and its tarpit. */
export class HandshakeGate {
  readonly limiter: HandshakeRateLimiter;
  readonly tarpitMs: number;
  readonly #summary: LogSummary;

  constructor(
    limit: Partial<HandshakeLimit> | undefined,
    log: StepLog,
    options: HandshakeGateOptions = {},
  ) {
    this.limiter = new HandshakeRateLimiter(limit, options.now);
    this.tarpitMs = options.tarpitMs ?? TARPIT_MS;
    this.#summary = new LogSummary(log);
  }

  /** "at most 20 handshakes a second per address, in bursts of 40" */
  describe(): string {
    return `at most ${this.limiter.rate} handshakes a second per address, in bursts of ${this.limiter.burst}`;
  }

  /**
   * Takes one handshake for `host`. True: go on. False: the host is over its rate; after the
   * tarpit, `refuse` was given the reason to send (its failures are ignored), and the caller closes.
   */
  async admit(
    host: string,
    remote: string,
    refuse: (reason: string) => Promise<void>,
  ): Promise<boolean> {
    // check: handshake-rate tests/bank/flood_test.ts tests/blackboard/flood_test.ts
    if (this.limiter.take(host)) return true;
    const { rate } = this.limiter;
    this.#summary.note(
      "refused handshakes over the per-address rate",
      `refused ${remote}: more than ${rate} handshakes a second from ${host}`,
    );
    await new Promise((resolve) => setTimeout(resolve, this.tarpitMs));
    await refuse(`Too many handshakes from ${host}: at most ${rate} a second; try again shortly`)
      .catch(() => {});
    return false;
  }

  /** Writes the summary of refusals so far (at shutdown). */
  flush(): void {
    this.#summary.flush();
  }
}

/** The command-line options of a handshake limit, for a server's `parseCommand`. */
export const HANDSHAKE_LIMIT_OPTIONS = {
  "handshake-rate": { type: "string", default: String(DEFAULT_HANDSHAKE_RATE) },
  "handshake-burst": { type: "string", default: String(DEFAULT_HANDSHAKE_BURST) },
} as const;

/** Their lines in a server's --help. */
export const HANDSHAKE_LIMIT_USAGE =
  `  --handshake-rate N   handshakes one address may start per second (default ${DEFAULT_HANDSHAKE_RATE}): each costs
                       a signature before anyone is authenticated; beyond it, refused after ${
    TARPIT_MS / 1000
  } s
  --handshake-burst N  handshakes one address may start at once (default ${DEFAULT_HANDSHAKE_BURST})`;

/** The options' values as a handshake limit. */
export function handshakeLimitOption(
  values: { "handshake-rate": string; "handshake-burst": string },
): HandshakeLimit {
  return {
    rate: parsePositiveInt(values["handshake-rate"], "handshake-rate", 1_000_000),
    burst: parsePositiveInt(values["handshake-burst"], "handshake-burst", 1_000_000),
  };
}
