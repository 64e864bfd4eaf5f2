/**
 * The generated dissector in tshark: pcap/lab.lua loads without error and registers its fields;
 * loaded twice (given twice, or installed in the personal Lua plugins folder and given with -X as
 * the README says) it is loaded once, with no Lua error; `deno task dissector --install` and
 * `--uninstall` with the task's own permissions, in a scratch HOME under data/.
 */

import assert from "node:assert/strict";
import { DATA_DIR, ensureDir } from "../../lib/runtime/mod.ts";
import {
  DISSECTOR_PATH,
  LAB_PREFS,
  labCoverage,
  labDissector,
  labReading,
  LOADED_MARKER,
  PLUGIN_FILE,
  REASSEMBLY_PREFS,
  tshark,
  USUAL_PLUGINS_DIR,
} from "../../lib/wireshark/mod.ts";
import { runScenario } from "../../tasks/scenarios/mod.ts";
import { denoDir, ROOT, run, runActor, taskPermissions, tempDir } from "../_fixtures/helpers.ts";

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

Deno.test("dissector: --install and --uninstall with the task's permissions; installed and -X, no Lua error", async () => {
  await using dir = await tempDir("lab-lua-install-");
  // An enrolment capture: a CSR and cert 2, which the installed dissector must show.
  const r = await runScenario("enrol", {
    outDir: `${dir.path}/out`,
    workParent: `${dir.path}/work`,
    capture: true,
    diagram: false,
    sink: () => {},
  });
  assert.ok(r.ok && r.capture, r.error ?? r.checks.map((c) => c.report).join("\n"));
  // A scratch HOME inside the project: tshark puts the personal Lua plugins folder under it.
  await ensureDir(DATA_DIR);
  const home = await Deno.makeTempDir({ dir: DATA_DIR, prefix: "dissector-home-" });
  try {
    const folder = `${home}/${USUAL_PLUGINS_DIR}`;
    const installed = `${folder}/${PLUGIN_FILE}`;
    const env = { HOME: home, DENO_DIR: await denoDir() };
    const permissions = await taskPermissions("dissector", { HOME: home });
    const task = (args: string[]) => runActor("tasks/dissector.ts", args, { permissions, env });
    const tsharkIn = (args: string[]) =>
      new Deno.Command("tshark", { args, env: { HOME: home }, stdin: "null" }).output()
        .then((o) => ({
          code: o.code,
          stdout: new TextDecoder().decode(o.stdout),
          stderr: complaints(new TextDecoder().decode(o.stderr)),
        }));
    const folders = await tsharkIn(["-G", "folders"]);
    assert.match(folders.stdout, new RegExp(`Personal Lua Plugins:\\s+${folder}\\n`));

    // Before: tshark alone does not know the lab's protocols.
    const before = await tsharkIn(["-r", r.capture, ...LAB_PREFS, "-Y", "frame"]);
    assert.doesNotMatch(before.stdout, /STEP 1 CSR/);

    const first = await task(["--install"]);
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /already up to date/);
    assert.ok(
      first.stdout.includes(`Installed ${installed} (tshark -G folders); restart Wireshark`),
      first.stdout,
    );
    assert.equal(await Deno.readTextFile(installed), await Deno.readTextFile(DISSECTOR_PATH));
    const again = await task(["--install"]);
    assert.equal(again.code, 0, again.stderr);
    assert.ok(again.stdout.includes(`Already installed: ${installed} (tshark -G folders)`));

    // Installed: tshark names the messages and shows cert 2 with no -X at all…
    const plain = await tsharkIn(["-r", r.capture, ...LAB_PREFS, "-V", "-Y", "cuhk"]);
    assert.equal(plain.stderr, "");
    assert.match(plain.stdout, /STEP 1 CSR/);
    assert.match(
      plain.stdout,
      /subject: rdnSequence \(0\)\n\s+rdnSequence: 1 item \(id-at-commonName=1155123456\)/,
    );
    // …and given with -X as well (the README's and the demo's hint), still no Lua error, and the
    // same dissection.
    const both = await tsharkIn([
      ...labReading(r.capture),
      "-V",
      "-Y",
      "cuhk",
    ]);
    assert.equal(both.code, 0);
    assert.equal(both.stderr, "", "no Lua error with the plugin installed and -X");
    assert.equal(both.stdout, plain.stdout);

    // Outside the folder the task may write, it stops before writing and says what to run.
    const elsewhere = `${dir.path}/elsewhere`;
    const refused = await task(["--install", "--plugin-dir", elsewhere]);
    assert.equal(refused.code, 1);
    assert.ok(
      refused.stderr.includes(
        `Not allowed to read and write ${elsewhere}: the task may write only pcap/ and $HOME/${USUAL_PLUGINS_DIR}; run instead: deno run --allow-read=.,${elsewhere} --allow-write=pcap,${elsewhere} --allow-run=tshark --allow-env=HOME tasks/dissector.ts --install --plugin-dir ${elsewhere}`,
      ),
      refused.stderr,
    );
    await assert.rejects(Deno.stat(elsewhere), Deno.errors.NotFound);

    const removed = await task(["--uninstall"]);
    assert.equal(removed.code, 0, removed.stderr);
    assert.ok(removed.stdout.includes(`Removed ${installed} (tshark -G folders)`));
    await assert.rejects(Deno.stat(installed), Deno.errors.NotFound);
    const none = await task(["--uninstall"]);
    assert.equal(none.code, 0, none.stderr);
    assert.ok(none.stdout.includes(`Not installed: no ${installed} (tshark -G folders)`));
    const gone = await tsharkIn(["-r", r.capture, ...LAB_PREFS, "-Y", "frame"]);
    assert.doesNotMatch(gone.stdout, /STEP 1 CSR/);

    // Someone else's lab.lua in that folder is left alone, with a clear error.
    await Deno.writeTextFile(installed, "-- not the lab's\n");
    for (const args of [["--install"], ["--uninstall"]]) {
      const res = await task(args);
      assert.equal(res.code, 1, args[0]);
      assert.match(res.stderr, /lab\.lua is not this lab's dissector .*leaving it alone/);
    }
    assert.equal(await Deno.readTextFile(installed), "-- not the lab's\n");

    // Mistakes in the command line.
    const both2 = await task(["--install", "--uninstall"]);
    assert.equal(both2.code, 2);
    assert.match(both2.stderr, /--install and --uninstall do not go together/);
    const lone = await task(["--plugin-dir", folder]);
    assert.equal(lone.code, 2);
    assert.match(lone.stderr, /--plugin-dir goes with --install or --uninstall/);
    const help = await task(["--help"]);
    assert.equal(help.code, 0);
    assert.match(
      help.stdout,
      /--install {2,}also copy pcap\/lab\.lua into Wireshark's personal Lua/,
    );
    assert.match(help.stdout, /writes only pcap\/ and \$HOME\/\.local\/lib\/wireshark\/plugins/);
    assert.match(help.stdout, /Loading twice is harmless/);
  } finally {
    await Deno.remove(home, { recursive: true });
  }
});

Deno.test("dissector: a lab connection on a port Wireshark gives another protocol (a client port of 44818, EtherNet/IP's) is still named, every byte", async () => {
  // A real capture of the demo's attack-session-key-sniff (28 Nov 2026) in which Trudy's
  // connection to Blackboard got the ephemeral port 44818.
  const capture = `${ROOT}/tests/_fixtures/port_collision.pcapng`;
  const coverage = await labCoverage(capture);
  assert.equal(coverage.size, 4);
  for (const [stream, c] of coverage) {
    assert.ok(c.wire > 1000 && c.named === c.wire, `stream ${stream}: ${c.named} of ${c.wire}`);
  }
  // The control: read with the reassembly preferences alone (the port table before lab.lua's
  // heuristic), that connection goes to EtherNet/IP (which waits for the rest of what it takes
  // for its own header's length) and not one of its bytes is named.
  const named = async (prefs: readonly string[]) =>
    (await tshark([
      "-X",
      `lua_script:${DISSECTOR_PATH}`,
      "-r",
      capture,
      ...prefs,
      "-Y",
      "tcp.port == 44818 && tcp.len > 0",
      "-T",
      "fields",
      "-e",
      "tcp.len",
      "-e",
      "blackboard.length",
    ])).split("\n").filter((l) => l !== "").map((l) => l.split("\t")[1] ?? "");
  // Six segments from Trudy's side, one frame each.
  const before = await named(REASSEMBLY_PREFS);
  assert.deepEqual(before, ["", "", "", "", "", ""]);
  const now = await named(LAB_PREFS);
  assert.equal(now.filter((l) => /^\d+$/.test(l)).length, 6, now.join("|"));
});
