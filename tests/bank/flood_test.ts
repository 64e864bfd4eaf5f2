/**
 * Unauthenticated clients make Bob sign: `Hello` + `prove it` costs him one RSA-2048 signature.
 * A flood of handshakes from one address (127.0.0.2, tasks/hostile/flood.py) is held to Bob's per-address rate
 * (a token bucket: 20 a second, bursts of 40), refused with a short line beyond it, summarised in
 * his log, and a legitimate Alice on 127.0.0.1 still completes within 2 s.
 */

import assert from "node:assert/strict";
import { BankClient } from "../../lib/bank/mod.ts";
import {
  DEFAULT_HANDSHAKE_BURST,
  DEFAULT_HANDSHAKE_RATE,
  HandshakeRateLimiter,
} from "../../lib/net/mod.ts";
import { aliceOptions, startBank } from "../_fixtures/bank.ts";
import { hostileHost, legitimateSessions, startFlood } from "../_fixtures/hostile.ts";
import { bankHandshakeFlights } from "../../tasks/hostile/flights.ts";
import { ActorProcess, hasCommand, memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";

Deno.test({
  name:
    "Bob rate-limits handshakes per address: a flood from 127.0.0.2 is held to 20/s, and Alice on 127.0.0.1 completes within 2 s",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    await using dir = await tempDir();
    const alice = await pki.student("1155000701");
    const cert = await pki.serverCert("bank", ["127.0.0.1"]);
    // Bob as a real process, with his default limits.
    await using bob = new ActorProcess("actors/bank.ts", [
      "serve",
      "--port",
      "0",
      "--data-dir",
      dir.path,
      "--cert",
      cert.certPath,
      "--key",
      cert.keyPath,
      "--ca-cert",
      cert.rootPath,
      "--ca",
      pki.caAddr,
    ]);
    const port = Number((await bob.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
    assert.match(bob.stderr, /at most 20 handshakes a second per address, in bursts of 40/);

    await using flood = await startFlood(port, { replay: 8, flights: bankHandshakeFlights() });
    // Alice, from 127.0.0.1, while the flood goes on: the handshake and an operation, again and
    // again for at least 2 s of flood (at least 3 sessions), each within 2 s.
    await legitimateSessions(async () => {
      const client = await BankClient.connect(
        aliceOptions(pki, alice, port, memoryLog("Alice").log),
      );
      try {
        assert.equal(await client.balance(), 0);
        await client.exit();
      } finally {
        client.close();
      }
    });
    const { answers: proofs, refused, seconds } = await flood.stop();
    // Bob signed at most a burst plus the rate for the flood's duration (and a little slack).
    const allowed = DEFAULT_HANDSHAKE_BURST + DEFAULT_HANDSHAKE_RATE * seconds + 10;
    assert.ok(
      proofs <= allowed,
      `Bob signed ${proofs} proofs for 127.0.0.2 in ${seconds.toFixed(1)} s (allowed ${allowed})`,
    );
    assert.ok(refused > 0, "the flood was refused beyond the rate");

    // The refusals are summarised: one line, then a count when Bob stops.
    assert.equal((await bob.stop("SIGINT")).code, 0, bob.stderr.slice(-2000));
    const lines = bob.stderr.split("\n").filter((l) => /127\.0\.0\.2.*handshakes a second/.test(l));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0]!,
      /WARNING refused 127\.0\.0\.2:\d+: more than 20 handshakes a second from 127\.0\.0\.2 \(more like this are summarised every 10 s\)/,
    );
    assert.match(
      bob.stderr,
      /WARNING refused handshakes over the per-address rate: \d+ more in the last 10 s/,
    );
  },
});

Deno.test("the handshake rate limiter: a burst, then the rate, per host", () => {
  let now = 0;
  const limiter = new HandshakeRateLimiter({ rate: 10, burst: 3 }, () => now);
  const take = (host: string, n: number) =>
    Array.from({ length: n }, () => limiter.take(host)).filter(Boolean).length;
  assert.equal(take("127.0.0.2", 10), 3, "a burst of 3");
  assert.equal(take("127.0.0.1", 1), 1, "another host is not held back");
  now += 100; // one token at 10 a second
  assert.equal(take("127.0.0.2", 5), 1);
  now += 10_000; // refilled, but never above the burst
  assert.equal(take("127.0.0.2", 10), 3);
  assert.throws(() => new HandshakeRateLimiter({ rate: 0 }), RangeError);
});

Deno.test({
  name:
    "Bob: 256 held connections and a garbage flood from 127.0.0.2; Alice on 127.0.0.1 completes a session within 2 s",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    const alice = await pki.student("1155000702");
    await using bank = await startBank(pki);
    await using _host = await hostileHost(bank.port, 256, 4);
    let deposits = 0;
    await legitimateSessions(async () => {
      const client = await BankClient.connect(
        aliceOptions(pki, alice, bank.port, memoryLog("Alice").log),
      );
      try {
        const outcome = await client.deposit("1.00");
        assert.ok(outcome.ok, JSON.stringify(outcome));
        assert.equal(outcome.balance, 100 * ++deposits);
        await client.exit();
      } finally {
        client.close();
      }
    });
    const stopped = await Promise.race([bank.server.finished.then(() => true), false]);
    assert.equal(stopped, false, "Bob stopped under the flood");
  },
});
