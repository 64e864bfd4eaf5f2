/**
 * The generated dissector: pcap/lab.lua is committed and must match what the protocol tables give
 * today; the generator carries every message of every table. (That tshark loads it without error
 * is in dissector_tshark_test.ts, with the tests that need tshark.)
 */

import assert from "node:assert/strict";
import { defineProtocol, type MessageSpecs } from "../../lib/wire/mod.ts";
import {
  DER_DISSECTORS,
  DISSECTOR_PATH,
  generateDissector,
  LAB_DISSECTORS,
  labDissector,
  LOADED_MARKER,
  openCommands,
  shellWord,
} from "../../lib/wireshark/mod.ts";
import { PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { runActor } from "../_fixtures/helpers.ts";

Deno.test("dissector: pcap/lab.lua is up to date with lib/*_protocol.ts", async () => {
  const committed = await Deno.readTextFile(DISSECTOR_PATH);
  assert.ok(
    committed === labDissector(),
    "pcap/lab.lua is out of date with the protocol tables: run 'deno task dissector' and commit it",
  );
  const check = await runActor("tasks/dissector.ts", ["--check"], {
    permissions: ["--allow-read=."],
  });
  assert.equal(check.code, 0, check.stderr);
  assert.match(check.stdout, /up to date/);
});

Deno.test("dissector: every message of the CA, Blackboard and bank tables, on their ports", () => {
  const lua = labDissector();
  assert.deepEqual(LAB_DISSECTORS.map((d) => [d.abbrev, d.port]), [
    ["cuhk", 9335],
    ["blackboard", 3141],
    ["bank", 6001],
  ]);
  for (const d of LAB_DISSECTORS) {
    assert.match(lua, new RegExp(`abbrev = "${d.abbrev}", name = "${d.protocol.name}"`));
    assert.match(lua, new RegExp(`port = ${d.port},`));
    for (const [type, spec] of Object.entries(d.protocol.messages as MessageSpecs)) {
      const label = spec.label.replace(/[\\"]/g, "\\$&");
      assert.ok(
        lua.includes(`[${spec.code}] = { name = "${type}", label = "${label}",`),
        `${d.abbrev}.${type} (${spec.label}) is missing from the Lua tables`,
      );
    }
  }
  // Blackboard's step-6 payload is decoded with the session table.
  assert.match(lua, /name = "payload", kind = "bytes", inner = "session"/);
  assert.match(lua, /dissect_tcp_pdus\(tvb, tree, 4, get_len, dissect_pdu, true\)/);
});

Deno.test("dissector: the generator escapes labels and refuses what Lua or tshark would break on", () => {
  const odd = defineProtocol("Odd", {
    quote: { code: 1, label: 'say "hi" \\ bye — ok', fields: { t: "text" } },
  });
  const lua = generateDissector([{ protocol: odd, abbrev: "odd", port: 1, title: "Odd" }]);
  assert.match(lua, /label = "say \\"hi\\" \\\\ bye \\226\\128\\148 ok"/);
  assert.throws(
    () => generateDissector([{ protocol: odd, abbrev: "Odd-1", port: 1, title: "x" }]),
    /Bad dissector name/,
  );
  assert.throws(
    () =>
      generateDissector([
        { protocol: odd, abbrev: "odd", port: 1, title: "x" },
        { protocol: odd, abbrev: "odd", port: 2, title: "y" },
      ]),
    /Duplicate dissector odd/,
  );
  const semi = defineProtocol("Semi", { a: { code: 1, label: "a; b", fields: {} } });
  assert.throws(
    () => generateDissector([{ protocol: semi, abbrev: "semi", port: 1, title: "x" }]),
    /contains ';'/,
  );
  const badField = defineProtocol("Bad", { a: { code: 1, label: "a", fields: { "x-y": "text" } } });
  assert.throws(
    () => generateDissector([{ protocol: badField, abbrev: "bad", port: 1, title: "x" }]),
    /Bad field name 'x-y'/,
  );
});

Deno.test("dissector: every certificate, CSR and CRL field goes to Wireshark's own dissector", () => {
  // Every field that carries one is named so in the tables: a new message with a certificate that
  // is not handed to the X.509 dissector fails here.
  const expected: Record<string, string> = { certificate: "certificate", crl: "crl", csr: "csr" };
  for (const d of LAB_DISSECTORS) {
    const named: Record<string, string> = {};
    for (const [type, spec] of Object.entries(d.protocol.messages as MessageSpecs)) {
      for (const [field, kind] of Object.entries(spec.fields)) {
        if (kind === "bytes" && expected[field]) named[`${type}.${field}`] = expected[field];
      }
    }
    assert.deepEqual(d.der ?? {}, named, `${d.abbrev}: DER fields`);
  }
  const lua = labDissector();
  assert.match(lua, /\{ name = "certificate", kind = "bytes", der = "certificate" \}/);
  assert.match(lua, /\{ name = "csr", kind = "bytes", der = "csr" \}/);
  assert.match(lua, /\{ name = "crl", kind = "bytes", der = "crl" \}/);
  for (const [kind, d] of Object.entries(DER_DISSECTORS)) {
    assert.ok(
      lua.includes(`${kind} = { syntax = "${d.syntax}", media_type = "${d.mediaType}" },`),
      kind,
    );
  }
  // A DER kind on a field that is not bytes, or on no field at all, is a mistake in the table.
  const odd = defineProtocol("Odd", {
    a: { code: 1, label: "a", fields: { t: "text", b: "bytes" } },
  });
  const base = { protocol: odd, abbrev: "odd", port: 1, title: "Odd" };
  assert.match(
    generateDissector([{ ...base, der: { "a.b": "certificate" } }]),
    /der = "certificate"/,
  );
  assert.throws(
    () => generateDissector([{ ...base, der: { "a.t": "certificate" } }]),
    /DER field odd\.a\.t is not a bytes field of Odd/,
  );
  assert.throws(
    () => generateDissector([{ ...base, der: { "a.nope": "crl" } }]),
    /DER field odd\.a\.nope is not a bytes field/,
  );
});

Deno.test("dissector: a second load returns before it registers anything", () => {
  const lua = labDissector();
  const guard = lua.indexOf("if lab_loaded() then return end");
  assert.ok(guard > 0, "the guard is there");
  // Nothing is registered before the guard: no Proto, no table entry, no heuristic.
  for (const call of ["Proto(", "DissectorTable.get(", "register_heuristic(", "ProtoField."]) {
    const first = lua.indexOf(call);
    assert.ok(first > guard, `${call} comes after the guard`);
  }
  // The marker is set right after it, as a global shared by every script in Wireshark's Lua state.
  assert.ok(lua.includes(`rawget(_G, "${LOADED_MARKER}")`));
  assert.ok(lua.indexOf(`\n${LOADED_MARKER} = true\n`) > guard);
});

Deno.test("dissector: the commands that open a capture with it", () => {
  assert.deepEqual(
    openCommands(`${PROJECT_ROOT}/pcap/captures/upload.pcapng`, { cwd: PROJECT_ROOT }),
    {
      wireshark: "wireshark -X lua_script:pcap/lab.lua pcap/captures/upload.pcapng",
      tshark: "tshark -X lua_script:pcap/lab.lua -r pcap/captures/upload.pcapng",
    },
  );
  // From another folder, absolute paths; a path the shell would split is quoted.
  assert.deepEqual(openCommands("/tmp/my captures/a.pcapng", { cwd: "/elsewhere" }), {
    wireshark: `wireshark -X lua_script:${DISSECTOR_PATH} '/tmp/my captures/a.pcapng'`,
    tshark: `tshark -X lua_script:${DISSECTOR_PATH} -r '/tmp/my captures/a.pcapng'`,
  });
  assert.equal(shellWord("it's"), `'it'\\''s'`);
  assert.equal(shellWord("a/b-c_d.e"), "a/b-c_d.e");
});
