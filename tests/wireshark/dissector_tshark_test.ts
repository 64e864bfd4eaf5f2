/** The generated dissector in tshark: pcap/lab.lua loads without error and registers its fields. */

import assert from "node:assert/strict";
import { DISSECTOR_PATH } from "../../lib/wireshark/mod.ts";
import { run, tempDir } from "../_fixtures/helpers.ts";

Deno.test("dissector: tshark loads pcap/lab.lua and registers its fields", async () => {
  await using dir = await tempDir("lab-lua-");
  // Lua errors at load time go to standard error; the field list shows what was registered.
  // -G must come first for tshark to accept it.
  const fields = await run("tshark", [
    "-G",
    "fields",
    "-X",
    `lua_script:${DISSECTOR_PATH}`,
  ]);
  assert.doesNotMatch(fields.stderr, /Lua:/);
  for (
    const f of [
      "cuhk.csr.sid",
      "blackboard.record.payload",
      "blackboard.session.chunk.offset",
      "bank.proof.signature",
      "bank.message",
      "labchat.type",
    ]
  ) {
    assert.match(fields.stdout, new RegExp(`\\t${f.replace(/\./g, "\\.")}\\t`), f);
  }
  // A broken script is reported (so the check above would notice one).
  const broken = `${dir.path}/broken.lua`;
  await Deno.writeTextFile(broken, "local x = = 1\n");
  const res = await run("tshark", ["-G", "protocols", "-X", `lua_script:${broken}`]);
  assert.match(res.stderr, /Lua: syntax error: .*broken\.lua/);
});
