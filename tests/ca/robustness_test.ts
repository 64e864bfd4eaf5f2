/**
 * The CA as a long-running server: it survives the loss of its log, and refuses to start on a
 * corrupted ledger.
 */

import assert from "node:assert/strict";
import { CertificateAuthority, fetchCrl, loadRoot } from "../../lib/ca/mod.ts";
import { checkStudentCsr, CsrError, parseCsr } from "../../lib/pki/mod.ts";
import { CorruptDatabaseError, PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { ActorProcess, runActor, tempDir } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

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
  const ca = await CertificateAuthority.open(`${dir.path}/ca`, {
    rootKeys: await testKeyPair(),
  });
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

Deno.test("two 'ca serve' on one fresh directory: one root, and the second is refused clearly", async () => {
  await using dir = await tempDir("lab-ca-lock-");
  const data = `${dir.path}/ca`;
  const args = ["serve", "--port", "0", "--data-dir", data];
  // Started together, as in the hostile-load report (6 of 6 made two roots).
  const first = new ActorProcess("actors/ca.ts", args);
  const second = new ActorProcess("actors/ca.ts", args);
  try {
    const outcome = await Promise.race([
      first.status.then(() => "first exited"),
      second.status.then(() => "second exited"),
    ]);
    const [winner, loser] = outcome === "first exited" ? [second, first] : [first, second];
    const status = await loser.status;
    assert.equal(status.code, 1);
    assert.match(
      loser.stderr,
      /in use by another process \(CA, pid \d+\): one CA per data directory/,
    );
    await winner.waitFor(/listening on/);
    const root = await Deno.readTextFile(`${data}/cuhk.cer`);
    // The survivor's root is the one on disk, and a third is refused too.
    const third = await runActor("actors/ca.ts", ["init", "--data-dir", data]);
    assert.equal(third.code, 1);
    assert.match(third.stderr, /in use by another process/);
    assert.equal(await Deno.readTextFile(`${data}/cuhk.cer`), root);
  } finally {
    await first.stop("SIGKILL");
    await second.stop("SIGKILL");
  }
  // Once the owner is gone (even killed), the directory can be taken again.
  const again = await runActor("actors/ca.ts", ["init", "--data-dir", data]);
  assert.equal(again.code, 0, again.stderr);
  assert.match(again.stdout, /SHA-256 fingerprint ([0-9A-F]{2}:){31}[0-9A-F]{2}/);
});

Deno.test("ca code, list, revoke, crl and issue on a directory with no CA refuse and create nothing", async () => {
  await using dir = await tempDir("lab-ca-nodir-");
  const wrong = `${dir.path}/typo`;
  for (
    const args of [
      ["code", "--sid", "1155000001"],
      ["list"],
      ["revoke", "--sid", "1155000001"],
      ["crl", "--out", `${dir.path}/crl.pem`],
      ["issue", "--server", "bank", "--out", `${dir.path}/bank`],
    ]
  ) {
    const r = await runActor("actors/ca.ts", [...args, "--data-dir", wrong]);
    assert.equal(r.code, 1, `ca ${args[0]}: ${r.stderr}`);
    assert.match(r.stderr, /No CA in .*typo .*ca init/);
    assert.equal(await exists(wrong), false, `ca ${args[0]} created ${wrong}`);
  }
});

Deno.test("durations out of bounds are usage errors (exit 2) and store nothing", async () => {
  await using dir = await tempDir("lab-ca-days-");
  const data = `${dir.path}/ca`;
  assert.equal((await runActor("actors/ca.ts", ["init", "--data-dir", data])).code, 0);
  const ledgerBefore = await runActor("actors/ca.ts", ["list", "--data-dir", data]);
  for (
    const [args, why] of [
      [
        ["code", "--sid", "1155000001", "--days", "99999999"],
        /--days must be a whole number from 1 to 365/,
      ],
      [["code", "--sid", "1155000001", "--days", "366"], /from 1 to 365/],
      // A negative number is the option's value, refused as such (not "takes no value").
      [
        ["code", "--sid", "1155000001", "--days", "-1"],
        /^ca code: --days must be a positive whole number, got '-1'\n/,
      ],
      [
        ["issue", "--server", "bank", "--out", `${dir.path}/bank`, "--days", "99999999"],
        /from 1 to 825/,
      ],
    ] as const
  ) {
    const r = await runActor("actors/ca.ts", [...args, "--data-dir", data]);
    assert.equal(r.code, 2, r.stderr);
    assert.match(r.stderr, why);
  }
  assert.equal(await exists(`${dir.path}/bank`), false);
  const ledgerAfter = await runActor("actors/ca.ts", ["list", "--data-dir", data]);
  assert.equal(ledgerAfter.stdout, ledgerBefore.stdout);
  // The largest allowed code still works.
  const ok = await runActor("actors/ca.ts", [
    "code",
    "--sid",
    "1155000001",
    "--days",
    "365",
    "--data-dir",
    data,
  ]);
  assert.equal(ok.code, 0, ok.stderr);
});

async function exists(path: string): Promise<boolean> {
  try {
    await Deno.stat(path);
    return true;
  } catch {
    return false;
  }
}

Deno.test("a valid RSA-8192 CSR is refused with what really happened, not as a bad signature", async () => {
  // Made with `openssl req -new -newkey rsa:8192 -subj /CN=1155123456` (the key was not kept).
  const pem = await Deno.readTextFile(`${PROJECT_ROOT}/tests/_fixtures/rsa8192.csr`);
  await assert.rejects(
    () => checkStudentCsr(parseCsr(pem)),
    (err: unknown) =>
      err instanceof CsrError &&
      /RSA key has 8192 bits: RSA keys above 4096 bits are not supported/.test(err.message),
  );
});
