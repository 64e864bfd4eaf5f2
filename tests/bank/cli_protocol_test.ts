/**
 * The bank's `--protocol default|seed` (the lab's one vocabulary): `default` is the default, and
 * `secure`, its old name, still works for one release with a one-line deprecation warning.
 */

import assert from "node:assert/strict";
import { ActorProcess, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";

const BANK = "actors/bank.ts";
const WARNING = (command: string) =>
  new RegExp(`^${command}: --protocol secure is deprecated; use --protocol default\\|seed$`, "m");

Deno.test("bank serve and client: --protocol default, and the deprecated --protocol secure", async () => {
  await using pki = await TestPki.start();
  await using dir = await tempDir();
  const alice = await pki.student("1155000001");
  const cert = await pki.serverCert("bank", ["127.0.0.1"]);
  for (const [serve, client] of [["default", "secure"], ["secure", "default"], [null, null]]) {
    const bob = new ActorProcess(BANK, [
      "serve",
      "--port",
      "0",
      "--data-dir",
      `${dir.path}/${serve}`,
      ...(serve ? ["--protocol", serve] : []),
      "--cert",
      cert.certPath,
      "--key",
      cert.keyPath,
      "--ca-cert",
      cert.rootPath,
      "--ca",
      pki.caAddr,
    ]);
    try {
      const port = (await bob.waitFor(/listening on 127\.0\.0\.1:(\d+) \(default protocol\)/))[1];
      if (serve === "secure") assert.match(bob.stderr, WARNING("bank serve"));
      else assert.doesNotMatch(bob.stderr, /deprecated/);
      const r = await runActor(BANK, [
        "client",
        "--bank",
        `127.0.0.1:${port}`,
        ...(client ? ["--protocol", client] : []),
        "--home",
        alice.home,
        "balance",
      ]);
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout, "balance 0.00\n");
      if (client === "secure") assert.match(r.stderr, WARNING("bank client"));
      else assert.doesNotMatch(r.stderr, /deprecated/);
    } finally {
      assert.equal((await bob.stop("SIGINT")).code, 0, bob.stderr);
    }
  }
  const bad = await runActor(BANK, ["client", "--protocol", "tls", "balance"]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^bank client: --protocol must be default or seed, got 'tls'/);
});
