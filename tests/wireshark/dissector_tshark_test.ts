/**
 * The generated dissector in tshark: pcap/lab.lua loads without error and registers its fields;
 * loaded twice (given twice, or after a copy from before the guard) it is loaded once, with no Lua
 * error.
 */

import assert from "node:assert/strict";
import { DISSECTOR_PATH, labDissector, LOADED_MARKER } from "../../lib/wireshark/mod.ts";
import { run, tempDir } from "../_fixtures/helpers.ts";

/** Lines of tshark's standard error that are not its "Running as root" notice. */
function complaints(stderr: string): string {
  return stderr.split("\n").filter((l) => l.trim() !== "" && !/Running as user "root"/.test(l))
    .join("\n");
}

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

Deno.test("dissector: given twice, or after a copy from before the guard, it loads once", async () => {
  await using dir = await tempDir("lab-lua-twice-");
  const protocols = (stdout: string) =>
    stdout.split("\n").filter((l) => /\t(cuhk|blackboard|bank|labchat)$/.test(l));
  const once = await run("tshark", ["-G", "protocols", "-X", `lua_script:${DISSECTOR_PATH}`]);
  assert.equal(complaints(once.stderr), "");
  assert.equal(protocols(once.stdout).length, 4);
  const twice = await run("tshark", [
    "-G",
    "protocols",
    "-X",
    `lua_script:${DISSECTOR_PATH}`,
    "-X",
    `lua_script:${DISSECTOR_PATH}`,
  ]);
  assert.equal(complaints(twice.stderr), "", "no Lua error the second time");
  assert.deepEqual(protocols(twice.stdout), protocols(once.stdout));
  // A copy generated before the guard existed sets no marker: its protocols are found instead.
  const old = labDissector()
    .replace("if lab_loaded() then return end\n", "")
    .replace(`\n${LOADED_MARKER} = true\n`, "\n");
  assert.notEqual(old, labDissector());
  await Deno.writeTextFile(`${dir.path}/old.lua`, old);
  const after = await run("tshark", [
    "-G",
    "protocols",
    "-X",
    `lua_script:${dir.path}/old.lua`,
    "-X",
    `lua_script:${DISSECTOR_PATH}`,
  ]);
  assert.equal(complaints(after.stderr), "");
  assert.deepEqual(protocols(after.stdout), protocols(once.stdout));
  // Without the guard the second load is the error the README once led to.
  const unguarded = await run("tshark", [
    "-G",
    "protocols",
    "-X",
    `lua_script:${dir.path}/old.lua`,
    "-X",
    `lua_script:${dir.path}/old.lua`,
  ]);
  assert.match(unguarded.stderr, /Lua: Error during loading:[\s\S]*there cannot be two protocols/);
});
