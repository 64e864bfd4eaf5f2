/**
 * The shared accept loop under hostile load (hostile-load report, items 1, 2 and 4): one host's
 * held connections and garbage never lock another host out, accept errors never stop a server,
 * and refusals are summarised, not logged one by one.
 */

import assert from "node:assert/strict";
import { requestCertificate } from "../../lib/ca/mod.ts";
import { LogSummary } from "../../lib/net/mod.ts";
import { createCsr, der } from "../../lib/pki/mod.ts";
import { RunningProcess } from "../../lib/runtime/mod.ts";
import { hasCommand, memoryLog, PROJECT_ROOT, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { hostileHost } from "../_fixtures/hostile.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

async function enrolFresh(pki: TestPki, sid: string) {
  const keys = await testKeyPair();
  const csr = der(await createCsr(keys, sid));
  const { code } = pki.ca.createCode(sid);
  const started = performance.now();
  const cert = await requestCertificate({
    ca: { hostname: "127.0.0.1", port: pki.server.port },
    sid,
    code,
    csr,
    publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
    root: pki.root,
    timeoutMs: 5_000,
  });
  assert.equal(cert.subject, `CN=${sid}`);
  return performance.now() - started;
}

Deno.test({
  name: "CA: 256 held connections and a garbage flood from 127.0.0.2; 127.0.0.1 enrols within 2 s",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    await using _host = await hostileHost(pki.server.port, 256, 4);
    for (let i = 0; i < 3; i++) {
      const ms = await enrolFresh(pki, `115500020${i}`);
      assert.ok(ms < 2000, `a legitimate enrolment took ${ms.toFixed(0)} ms under the flood`);
    }
    // The refusals were summarised, not written one per connection.
    const refusalLines = pki.lines.filter((l) => /refused connection from 127\.0\.0\.2/.test(l));
    assert.ok(
      refusalLines.length <= 2,
      `${refusalLines.length} refusal lines:\n${refusalLines.join("\n")}`,
    );
  },
});

Deno.test("LogSummary writes the first line of a kind, then one summary per interval", async () => {
  const { log, lines } = memoryLog("srv");
  const summary = new LogSummary(log, 50);
  for (let i = 0; i < 1000; i++) summary.note("refused at capacity", `refused #${i}`);
  assert.equal(lines.length, 1);
  assert.match(lines[0]!, /refused #0 \(more like this are summarised every 0\.05 s\)/);
  await new Promise<void>((resolve) => {
    const check = () => (lines.length >= 2 ? resolve() : setTimeout(check, 10));
    check();
  });
  assert.match(lines[1]!, /refused at capacity: 999 more in the last 0\.05 s/);
  summary.flush();
  assert.equal(lines.length, 2, "nothing more to summarise");
});

Deno.test({
  name: "an accept error (out of file descriptors) never stops the CA: it caps and keeps serving",
  ignore: !(await hasCommand("python3")) || !(await hasCommand("sh")),
  fn: async () => {
    await using dir = await tempDir("lab-emfile-");
    const data = `${dir.path}/ca`;
    // The CA under `ulimit -n 96`, its per-address cap raised so that one host can exhaust it.
    const ca = new RunningProcess("sh", [
      "-c",
      `ulimit -n 96 && exec "${Deno.execPath()}" run --quiet --allow-net=127.0.0.1 --allow-read ` +
      `--allow-write "${PROJECT_ROOT}/actors/ca.ts" serve --port 0 --data-dir "${data}" ` +
      `--max-per-address 1000`,
    ], { name: "ca serve (ulimit -n 96)" });
    try {
      const port = Number((await ca.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]);
      {
        await using _host = await hostileHost(port, 200, 0);
        await ca.waitFor(/accept failed: .*[Tt]oo many open files.*still accepting/);
        await ca.waitFor(/out of file descriptors at \d+ connections: capping at \d+/);
      }
      // The flood is gone: the CA is still there and serves a CRL request.
      const r = await new Deno.Command(Deno.execPath(), {
        args: [
          "eval",
          `import { fetchCrl, loadRoot } from "${PROJECT_ROOT}/lib/ca/mod.ts";` +
          `const crl = await fetchCrl({ hostname: "127.0.0.1", port: ${port} }, ` +
          `await loadRoot("${data}/cuhk.cer")); console.log("crl", crl.entries.length);`,
        ],
      }).output();
      assert.equal(new TextDecoder().decode(r.stdout).trim(), "crl 0");
      const exited = await Promise.race([ca.status.then(() => true), Promise.resolve(false)]);
      assert.equal(exited, false, `the CA exited:\n${ca.stderr}`);
    } finally {
      await ca.stop("SIGKILL");
    }
  },
});

Deno.test("a framed server lets a silent connection go at the first-frame deadline (2 s), not the session's", async () => {
  await using pki = await TestPki.start();
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: pki.server.port });
  const started = performance.now();
  const buf = new Uint8Array(1024);
  // The server closes (after a short refusal, or none): read to the end.
  let n: number | null;
  do n = await conn.read(buf).catch(() => null); while (n !== null);
  const ms = performance.now() - started;
  conn.close();
  assert.ok(ms >= 1_500 && ms < 5_000, `closed after ${ms.toFixed(0)} ms`);
});
