/**
 * Blackboard under a hostile host (127.0.0.2): 256 idle connections held and reconnected, and a
 * garbage flood. A student on 127.0.0.1 still completes a whole session (steps 3-6) within 2 s,
 * again and again, and Blackboard keeps running.
 */

import assert from "node:assert/strict";
import { openSession } from "../../lib/blackboard/mod.ts";
import { hasCommand, memoryLog, TestPki } from "../_fixtures/helpers.ts";
import { identity, startBlackboard } from "../_fixtures/blackboard.ts";
import { hostileHost, legitimateSessions } from "../_fixtures/hostile.ts";

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
