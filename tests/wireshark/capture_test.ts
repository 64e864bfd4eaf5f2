/**
 * lib/wireshark/capture.ts: the capture is live before `start` returns, only the given ports are captured,
 * a stopped capture is complete and readable by everyone, and failures say why. `deno task capture`
 * ends with the exact commands that open the capture with the dissector, and they work.
 */

import assert from "node:assert/strict";
import {
  Capture,
  CaptureError,
  embedSecrets,
  freePorts,
  portFilter,
  tshark,
  wiresharkTcpPorts,
} from "../../lib/wireshark/mod.ts";
import { DATA_DIR, ensureDir, PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { runActor, taskPermissions, tempDir } from "../_fixtures/helpers.ts";

/** Opens a TCP connection to `port`, sends `text`, and waits for the echo server to close. */
async function exchange(port: number, text: string): Promise<void> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(new TextEncoder().encode(text));
  conn.closeWrite();
  const buf = new Uint8Array(1024);
  while ((await conn.read(buf)) !== null) {
    // Drain until the server closes.
  }
  conn.close();
}

function sink(listener: Deno.Listener): Promise<void> {
  return (async () => {
    for await (const conn of listener) {
      const buf = new Uint8Array(1024);
      while ((await conn.read(buf)) !== null) {
        // Read everything, then close.
      }
      conn.close();
    }
  })().catch(() => {});
}

Deno.test("capture: only the filtered ports, live at once, complete after stop, mode 0644", async () => {
  await using dir = await tempDir("lab-cap-");
  const wanted = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const other = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = [sink(wanted), sink(other)];
  const capture = await Capture.start({ ports: [wanted.addr.port], workDir: `${dir.path}/w` });
  assert.equal(capture.filter, `tcp port ${wanted.addr.port} or udp dst port 9`);
  assert.match(capture.log, /^File: /m);
  assert.equal((await Deno.stat(capture.keyLogPath)).mode! & 0o777, 0o600);
  // Sent right after start returns: must be in the capture.
  await exchange(wanted.addr.port, "first bytes after start");
  await exchange(other.addr.port, "not on the filtered port");
  await capture.stop();
  await capture.stop(); // safe twice
  const { path, secrets } = await capture.finish(`${dir.path}/out/plain.pcapng`);
  assert.equal(secrets, false);
  assert.equal((await Deno.stat(path)).mode! & 0o777, 0o644);
  assert.equal((await Deno.stat(`${dir.path}/out`)).mode! & 0o777, 0o755);
  const ports = await tshark(["-r", path, "-T", "fields", "-e", "tcp.dstport"]);
  const seen = new Set(ports.trim().split("\n").map(Number));
  assert.ok(seen.has(wanted.addr.port));
  assert.ok(!seen.has(other.addr.port), "the other port must not be captured");
  const data = await tshark(["-r", path, "-T", "fields", "-e", "tcp.payload"]);
  assert.match(data.replace(/[:\s]/g, ""), /6669727374206279746573/); // "first bytes"
  // The raw capture and the key log are gone.
  await assert.rejects(Deno.stat(capture.rawPath));
  await assert.rejects(Deno.stat(capture.keyLogPath));
  wanted.close();
  other.close();
  await Promise.all(done);
});

Deno.test("capture: a dumpcap running late still gets every packet, and no end sentinel stays in the file", async () => {
  // On a loaded machine dumpcap may not have read the scenario's last packets when it is stopped,
  // and on SIGINT it drops whatever the kernel still holds for it, counting nothing as dropped.
  // Here it is frozen (SIGSTOP) while 40 connections pass, and woken only after stopping began.
  await using dir = await tempDir("lab-cap-late-");
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const done = sink(listener);
  const capture = await Capture.start({ ports: [listener.addr.port], workDir: `${dir.path}/w` });
  const found = await new Deno.Command("pgrep", { args: ["-f", capture.rawPath] }).output();
  const pid = Number(new TextDecoder().decode(found.stdout).trim().split("\n")[0]);
  assert.ok(pid > 0, "dumpcap's pid");
  Deno.kill(pid, "SIGSTOP");
  try {
    for (let i = 0; i < 40; i++) await exchange(listener.addr.port, `late packet ${i} `);
  } finally {
    // Woken 1.5 s after stopping began: long after a fixed pause would have sent SIGINT.
    setTimeout(() => Deno.kill(pid, "SIGCONT"), 1500);
  }
  const { path } = await capture.finish(`${dir.path}/out/late.pcapng`);
  const payload = await tshark(["-r", path, "-T", "fields", "-e", "tcp.payload"]);
  const text = new TextDecoder().decode(
    Uint8Array.from(payload.replace(/[:\s]/g, "").match(/../g) ?? [], (h) => parseInt(h, 16)),
  );
  for (let i = 0; i < 40; i++) assert.ok(text.includes(`late packet ${i} `), `packet ${i} lost`);
  const udp = await tshark(["-r", path, "-Y", "udp", "-T", "fields", "-e", "frame.number"]);
  assert.equal(udp.trim(), "", "the end sentinel was removed");
  listener.close();
  await done;
});

Deno.test("capture: a bad interface fails with dumpcap's reason", async () => {
  await using dir = await tempDir("lab-cap-bad-");
  await assert.rejects(
    Capture.start({ ports: [9], workDir: `${dir.path}/w`, interface: "no-such-if0" }),
    (err: unknown) =>
      err instanceof CaptureError && /dumpcap did not start capturing/.test(err.message),
  );
});

Deno.test("capture: port filters, free ports, and editcap failures", async () => {
  assert.equal(portFilter([1, 2, 2]), "tcp port 1 or tcp port 2");
  assert.throws(() => portFilter([]), RangeError);
  assert.throws(() => portFilter([0]), /Bad port 0/);
  assert.throws(() => portFilter([70000]), /Bad port 70000/);
  const ports = freePorts(3);
  assert.equal(new Set(ports).size, 3);
  await using dir = await tempDir("lab-cap-edit-");
  await Deno.writeTextFile(`${dir.path}/junk.pcapng`, "not a capture");
  await assert.rejects(
    embedSecrets(`${dir.path}/junk.pcapng`, `${dir.path}/none.log`, `${dir.path}/out.pcapng`),
    /editcap failed/,
  );
  await assert.rejects(Deno.stat(`${dir.path}/out.pcapng`));
  await assert.rejects(Deno.stat(`${dir.path}/out.pcapng.tmp`));
});

Deno.test("capture: free ports for scenarios skip the ports Wireshark decodes as other protocols", async () => {
  const registered = await wiresharkTcpPorts();
  // PCP's port, where a lab server was once dissected as Performance Co-Pilot instead of lab.lua.
  assert.ok(registered.has(44321), "tshark -G decodes lists tcp.port 44321");
  assert.ok(registered.size > 100);
  // Ports just handed out are likely to be handed out again: avoiding them must skip them all.
  const avoid = new Set(freePorts(20));
  const picked = freePorts(5, avoid);
  assert.equal(new Set(picked).size, 5);
  for (const p of picked) assert.ok(!avoid.has(p), `${p} was to be avoided`);
});

Deno.test("capture task: ends with the commands that open the capture with the dissector", async () => {
  // --out must be inside the project (the task's permissions): a scratch folder under data/.
  await ensureDir(DATA_DIR);
  const out = await Deno.makeTempDir({ dir: DATA_DIR, prefix: "capture-task-" });
  try {
    const rel = out.slice(PROJECT_ROOT.length + 1);
    const res = await runActor("tasks/capture.ts", ["enrol", "--out", rel, "--quiet"], {
      permissions: await taskPermissions("capture"),
      timeoutMs: 120_000,
    });
    assert.equal(res.code, 0, `${res.stdout}\n${res.stderr}`);
    const lines = res.stdout.trimEnd().split("\n");
    const wireshark = `wireshark -X lua_script:pcap/lab.lua ${rel}/enrol.pcapng`;
    const tsharkLine = `tshark -X lua_script:pcap/lab.lua -r ${rel}/enrol.pcapng`;
    assert.deepEqual(lines.slice(-3), [
      "Open it with the lab's dissector (installed by 'deno task dissector --install', -X is not needed; given as well, it is harmless):",
      `  ${wireshark}`,
      `  ${tsharkLine}`,
    ]);
    // The printed tshark command, run as printed from the project folder, names the messages.
    const [cmd, ...args] = tsharkLine.split(" ");
    const shown = await new Deno.Command(cmd!, { args, cwd: PROJECT_ROOT, stdin: "null" }).output();
    const stdout = new TextDecoder().decode(shown.stdout);
    assert.ok(shown.success, new TextDecoder().decode(shown.stderr));
    assert.doesNotMatch(new TextDecoder().decode(shown.stderr), /Lua/);
    assert.match(stdout, /CUHK \d+ STEP 1 CSR sid="1155123456"/);
    assert.match(stdout, /CUHK \d+ STEP 2 cert 2/);
  } finally {
    await Deno.remove(out, { recursive: true });
  }
});
