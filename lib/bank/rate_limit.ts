/**
 * Bob's handshakes, rate-limited per remote host: `Hello` then `prove it` costs Bob one RSA-2048
 * signature before anyone is authenticated, so one host may start at most `rate` handshakes a
 * second, with bursts up to `burst` (a token bucket per host). A host over its rate is refused at
 * once, before Bob reads a byte; everyone else's handshakes are not delayed by it.
 */

/** Handshakes a host may start per second, unless configured. */
export const DEFAULT_HANDSHAKE_RATE = 20;
/** Handshakes a host may start at once after a quiet spell, unless configured. */
export const DEFAULT_HANDSHAKE_BURST = 40;
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
