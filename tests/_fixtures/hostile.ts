/**
 * Hostile hosts for the availability tests, as python3 processes on a loopback address of their
 * own (127.0.0.2), so that the per-address limits apply to them and not to the legitimate client
 * on 127.0.0.1.
 */

import assert from "node:assert/strict";
import { type Flood, startFlood } from "../../tasks/hostile/flood.ts";
export { startFlood };

/**
 * Holds `hold` idle connections (reconnecting what the server drops) and floods garbage on
 * `garbage` more, from 127.0.0.2; resolves once the connections are held.
 */
export async function hostileHost(port: number, hold: number, garbage: number): Promise<Flood> {
  return await startFlood(port, { hold, garbage });
}

/**
 * Runs `session` (a legitimate client's whole session) again and again, at least 3 times and for
 * at least `forMs`, and asserts that each completes within `limitMs`; returns the durations. Like a
 * person, not a flood, the client starts at most one session every `paceMs` (10 a second, under
 * the servers' handshake rate of 20 per address).
 */
export async function legitimateSessions(
  session: () => Promise<void>,
  { forMs = 2000, limitMs = 2000, paceMs = 100 } = {},
): Promise<number[]> {
  const took: number[] = [];
  const started = performance.now();
  for (let i = 0; i < 3 || performance.now() - started < forMs; i++) {
    const t0 = performance.now();
    await session();
    const ms = performance.now() - t0;
    assert.ok(ms < limitMs, `a legitimate session took ${ms.toFixed(0)} ms under the flood`);
    took.push(ms);
    const rest = t0 + paceMs - performance.now();
    if (rest > 0) await new Promise((resolve) => setTimeout(resolve, rest));
  }
  return took;
}
