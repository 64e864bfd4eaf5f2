/**
 * Audit finding 9: peer text reaches logs and terminals raw. Every log line and every error line of
 * an actor passes through the one printable(), whatever call site wrote it.
 */

import assert from "node:assert/strict";
import { caProtocol } from "../../lib/ca/mod.ts";
import { encodeFrame } from "../../lib/wire/mod.ts";
import { ActorProcess, memoryLog, runActor, tempDir } from "../_fixtures/helpers.ts";

const FORGED =
  "1155\u001b[2J\u001b]0;pwned\u0007\n12:00:00.000 [CUHK] STEP 2 signed cert 2 for SID 9999999999\u202e";

Deno.test("a log line with peer text stays one line, with no escape sequence or bidi override", () => {
  const { log, lines } = memoryLog("CUHK");
  log.step(1, `received CSR for SID ${FORGED}`);
  log.warn(`refused: ${FORGED}`);
  assert.equal(lines.length, 2);
  for (const line of lines) {
    assert.ok(
      // deno-lint-ignore no-control-regex
      !/[\u0000-\u001f\u007f\u202e]/.test(line),
      `raw control text in ${JSON.stringify(line)}`,
    );
    assert.match(line, /\\u\{1b\}\[2J/);
    assert.match(line, /\\u\{a\}12:00:00\.000 \[CUHK\] STEP 2 signed/);
  }
});

Deno.test("the CA's log shows a hostile student ID as text: no forged line, no terminal escapes", async () => {
  await using dir = await tempDir("lab-log-");
  await using ca = new ActorProcess("actors/ca.ts", [
    "serve",
    "--port",
    "0",
    "--data-dir",
    `${dir.path}/ca`,
  ]);
  const port = Number((await ca.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  await conn.write(encodeFrame(caProtocol.encode("csr", {
    sid: FORGED,
    binding: new Uint8Array(32),
    csr: new Uint8Array(64),
  })));
  const reply = new Uint8Array(4096);
  await conn.read(reply);
  conn.close();
  await ca.waitFor(/refused/);
  assert.ok(!ca.stderr.includes("\u001b"), "an escape sequence reached the CA's log");
  assert.ok(!ca.stderr.includes("\u202e"), "a bidi override reached the CA's log");
  assert.doesNotMatch(
    ca.stderr,
    /^12:00:00\.000 \[CUHK\] STEP 2 signed cert 2 for SID 9999999999/m,
  );
  assert.match(ca.stderr, /\\u\{1b\}\]0;pwned\\u\{7\}/);
});

Deno.test("an actor's error line shows a peer's refusal as text", async () => {
  // A fake CA that answers every request with a hostile refusal.
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const served = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(65536);
    await conn.read(buf);
    await conn.write(encodeFrame(caProtocol.encode("error", { reason: FORGED })));
    conn.close();
  })();
  await using dir = await tempDir("lab-log-");
  await Deno.mkdir(`${dir.path}/ca`);
  const init = await runActor("actors/ca.ts", ["init", "--data-dir", `${dir.path}/ca`]);
  assert.equal(init.code, 0, init.stderr);
  const r = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    "1155000001",
    "--code",
    "x",
    "--ca",
    `127.0.0.1:${(listener.addr as Deno.NetAddr).port}`,
    "--ca-cert",
    `${dir.path}/ca/cuhk.cer`,
    "--home",
    `${dir.path}/student`,
  ]);
  await served;
  listener.close();
  assert.equal(r.code, 1, r.stderr);
  assert.ok(!r.stderr.includes("\u001b"), `raw escape in: ${JSON.stringify(r.stderr)}`);
  assert.ok(!r.stderr.includes("\u0007"));
  assert.match(r.stderr, /\\u\{1b\}\[2J/);
  assert.doesNotMatch(r.stderr, /^12:00:00\.000 \[CUHK\]/m);
});
