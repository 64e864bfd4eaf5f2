/**
 * Blackboard under a hostile host (127.0.0.2): 256 idle connections held and reconnected, and a
 * garbage flood. A student on 127.0.0.1 still completes a whole session (steps 3-6) within 2 s,
 * again and again, and Blackboard keeps running.
 */

import assert from "node:assert/strict";
import { openSession } from "../../lib/blackboard/mod.ts";
import { hasCommand, memoryLog, TestPki } from "../_fixtures/helpers.ts";
import { identity, startBlackboard } from "../_fixtures/blackboard.ts";
import { hostileHost, legitimateSessions, startFlood } from "../_fixtures/hostile.ts";
import { blackboardRequestFlights } from "../../tasks/hostile/flights.ts";
import { DEFAULT_HANDSHAKE_BURST, DEFAULT_HANDSHAKE_RATE } from "../../lib/net/mod.ts";

Deno.test({
  name:
    "Blackboard: 256 held connections and a garbage flood from 127.0.0.2; a student on 127.0.0.1 completes steps 3-6 within 2 s",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    const student = await pki.student("1155000801");
    const id = await identity(student.home);
    await using bb = await startBlackboard(pki);
    await using _host = await hostileHost(bb.addr.port, 256, 4);
    const { log } = memoryLog("student");
    let sent = 0;
    await legitimateSessions(async () => {
      using session = await openSession({ blackboard: bb.addr, identity: id, log });
      await session.secure.send("message", { text: `under the flood ${++sent}` });
      await session.secure.receive(["received"]);
    });
    assert.deepEqual(
      bb.printed,
      Array.from({ length: sent }, (_, i) => `Message from 1155000801: under the flood ${i + 1}`),
    );
    // Blackboard is still up, and summarised the refusals rather than logging each.
    const stopped = await Promise.race([bb.server.finished.then(() => true), false]);
    assert.equal(stopped, false, "Blackboard stopped under the flood");
    const refusals = bb.lines.filter((l) => /refused connection from 127\.0\.0\.2/.test(l));
    assert.ok(refusals.length <= 2, `${refusals.length} refusal lines:\n${refusals.join("\n")}`);
  },
});

Deno.test({
  name:
    "Blackboard rate-limits handshakes per address: a flood of step-3 requests from 127.0.0.2 is held to 20/s, and a student on 127.0.0.1 completes within 2 s",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    const student = await pki.student("1155000802");
    const id = await identity(student.home);
    await using bb = await startBlackboard(pki);
    // Each request is a real student's: Blackboard verifies cert 2 and signs its step 4.
    await using flood = await startFlood(bb.addr.port, {
      replay: 8,
      flights: await blackboardRequestFlights(id.sid, new Uint8Array(id.cert.rawData)),
    });
    const { log } = memoryLog("student");
    await legitimateSessions(async () => {
      using session = await openSession({ blackboard: bb.addr, identity: id, log });
      await session.secure.send("message", { text: "under a handshake flood" });
      await session.secure.receive(["received"]);
    });
    const { answers, refused, seconds } = await flood.stop();
    const allowed = DEFAULT_HANDSHAKE_BURST + DEFAULT_HANDSHAKE_RATE * seconds + 10;
    assert.ok(
      answers <= allowed,
      `Blackboard signed ${answers} step 4s for 127.0.0.2 in ${
        seconds.toFixed(1)
      } s (allowed ${allowed})`,
    );
    assert.ok(refused > 0, "the flood was refused beyond the rate");
    const lines = bb.lines.filter((l) => /127\.0\.0\.2.*handshakes a second/.test(l));
    assert.equal(lines.length, 1, lines.join("\n"));
    assert.match(
      lines[0]!,
      /refused 127\.0\.0\.2:\d+: more than 20 handshakes a second from 127\.0\.0\.2 \(more like this are summarised every 10 s\)/,
    );
  },
});
