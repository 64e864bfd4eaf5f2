/**
 * The CA as a long-running server: it survives the loss of its log, and refuses to start on a
 * corrupted ledger.
 */

import assert from "node:assert/strict";
import { CertificateAuthority, fetchCrl, loadRoot } from "../../lib/ca/mod.ts";
import { CorruptDatabaseError, PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { runActor, tempDir } from "../_fixtures/helpers.ts";

Deno.test("the CA keeps serving after its standard error pipe closes (serve 2>&1 | head -2)", async () => {
  await using dir = await tempDir("lab-ca-pipe-");
  const child = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      "--allow-net=127.0.0.1",
      "--allow-read",
      "--allow-write",
      `${PROJECT_ROOT}/actors/ca.ts`,
      "serve",
      "--port",
      "0",
      "--data-dir",
      `${dir.path}/ca`,
    ],
    stdin: "null",
    stdout: "null",
    stderr: "piped",
  }).spawn();
  try {
    // Read like `head`: until the listening line, then close the pipe.
    const reader = child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let seen = "";
    let addr: RegExpMatchArray | null = null;
    while (!addr) {
      const { value, done } = await reader.read();
      if (done) throw new Error(`the CA exited before listening:\n${seen}`);
      seen += value;
      addr = /listening on 127\.0\.0\.1:(\d+)/.exec(seen);
    }
    await reader.cancel();
    const ca = { hostname: "127.0.0.1", port: Number(addr[1]) };
    const root = await loadRoot(`${dir.path}/ca/cuhk.cer`);
    // Each request makes the CA log a line into the closed pipe; it must answer all the same.
    for (let i = 0; i < 3; i++) {
      const crl = await fetchCrl(ca, root);
      assert.equal(crl.entries.length, 0);
    }
    const exited = await Promise.race([
      child.status.then(() => true),
      Promise.resolve(false),
    ]);
    assert.equal(exited, false, "the CA is still running");
  } finally {
    try {
      child.kill("SIGKILL");
    } catch { /* exited */ }
    await child.status;
  }
});

Deno.test("a corrupted ledger is refused at start with a clear error; ca serve exits 1", async () => {
  await using dir = await tempDir("lab-ca-corrupt-");
  const ca = await CertificateAuthority.open(`${dir.path}/ca`, { rootBits: 2048 });
  for (let i = 0; i < 200; i++) ca.createCode(`115500${String(i).padStart(4, "0")}`);
  ca.close();
  const ledger = [...Deno.readDirSync(`${dir.path}/ca`)]
    .map((e) => e.name)
    .find((n) => /\.(db|sqlite)$/.test(n));
  assert.ok(ledger, "the ledger file exists");
  const path = `${dir.path}/ca/${ledger}`;
  // Overwrite the inside of the file (past the header page) with garbage.
  const bytes = await Deno.readFile(path);
  assert.ok(bytes.length > 8192, `ledger of ${bytes.length} bytes`);
  bytes.fill(0x5a, 4096, bytes.length - 1024);
  await Deno.writeFile(path, bytes);
  await assert.rejects(
    () => CertificateAuthority.open(`${dir.path}/ca`, { rootBits: 2048 }),
    (err: unknown) => err instanceof CorruptDatabaseError && /is corrupt/.test(err.message),
  );
  const r = await runActor("actors/ca.ts", [
    "serve",
    "--port",
    "0",
    "--data-dir",
    `${dir.path}/ca`,
  ]);
  assert.equal(r.code, 1, r.stderr);
  assert.match(r.stderr, /is corrupt .*refusing to start/);
});
