/**
 * The chat server's per-client queue bound on its own: a client that stops reading is
 * disconnected because its queue passed the limit, long before its write deadline could do it
 * (so the bound, not the deadline, is what this test pins), and the others keep everything.
 */

import assert from "node:assert/strict";
import type { ServerMessage } from "../../lib/chat/mod.ts";
import { ChatFixture, rawHello } from "../_fixtures/chat.ts";

Deno.test("a client that stops reading is dropped when its queue passes the bound, not at its write deadline", async () => {
  await using chat = await ChatFixture.start({
    maxQueueBytes: 64 * 1024,
    writeTimeoutMs: 120_000,
    rate: 100_000,
    burst: 100_000,
    maxText: 4000,
  });
  const alice = await chat.join("alice");
  const stuck = await chat.raw();
  assert.equal((await rawHello(stuck.framed, "stuck")).type, "welcome");
  await alice.waitFor((m) => m.type === "joined" && m.nick === "stuck");
  const stuckLeft = (m: ServerMessage) => m.type === "left" && m.nick === "stuck";
  const own = () => alice.inbox.filter((m) => m.type === "said" && m.from === "alice").length;
  const padding = "x".repeat(3990);
  const started = performance.now();
  let n = 0;
  // The kernel's socket buffers take a few MB first; then the server's queue fills.
  while (!alice.inbox.some(stuckLeft) && n < 4000) {
    while (n - own() >= 16) await alice.waitFor(() => false, 20).catch(() => {});
    await alice.send({ type: "say", text: `${n} ${padding}` });
    n++;
  }
  const left = await alice.waitFor(stuckLeft, 5000);
  const seconds = (performance.now() - started) / 1000;
  assert.equal(left.type === "left" && left.reason, "Not reading: more than 64 KiB queued");
  assert.ok(seconds < 60, `dropped after ${seconds.toFixed(1)} s`);
  stuck.framed.close();
  assert.deepEqual(chat.server.nicks, ["alice"]);
});
