/**
 * TCP_NODELAY on a listener's accepted connections (lib/net/nodelay.ts): found and set through
 * libc with `--allow-ffi` (the listening socket, not a connection sharing its address; connections
 * accepted afterwards inherit it); without the permission, nothing is touched and the outcome says
 * why.
 */

import assert from "node:assert/strict";
import { noDelayOnAccepted } from "../../lib/net/mod.ts";
import { runProbe } from "../_fixtures/helpers.ts";

Deno.test("with --allow-ffi the listening socket gets TCP_NODELAY and connections accepted later inherit it", async () => {
  // deno-lint-ignore no-explicit-any
  const probe: any = await runProbe("nodelay_probe.ts", ["--allow-net=127.0.0.1", "--allow-ffi"]);
  assert.equal(probe.outcome.set, true, JSON.stringify(probe));
  assert.equal(probe.after, 1, "a connection accepted afterwards has TCP_NODELAY");
  assert.equal(probe.before, 0, "the connection accepted before was not touched");
});

Deno.test("without --allow-ffi nothing is touched, and the outcome says why", () => {
  if (Deno.permissions.querySync({ name: "ffi" }).state === "granted") return; // run with -A
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  assert.deepEqual(noDelayOnAccepted(listener), { set: false, reason: "no --allow-ffi" });
});
