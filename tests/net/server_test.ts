/**
 * The shared accept loop under hostile load (hostile-load report, items 1, 2 and 4): one host's
 * held connections and garbage never lock another host out, accept errors never stop a server,
 * and refusals are summarised, not logged one by one.
 */

import assert from "node:assert/strict";
import { requestCertificate } from "../../lib/ca/mod.ts";
import { LogSummary } from "../../lib/net/mod.ts";
import { createCsr, der, generateRsaKeyPair } from "../../lib/pki/mod.ts";
import { hasCommand, memoryLog, PROJECT_ROOT, TestPki } from "../_fixtures/helpers.ts";

const FLOOD = `${PROJECT_ROOT}/tests/_fixtures/flood.py`;

/** A hostile host at 127.0.0.2 holding `hold` connections and flooding garbage on `garbage`. */
async function hostileHost(port: number, hold: number, garbage: number) {
  const child = new Deno.Command("python3", {
    args: [FLOOD, String(port), String(hold), String(garbage)],
    stdin: "piped",
    stdout: "piped",
    stderr: "inherit",
  }).spawn();
  const reader = child.stdout.pipeThrough(new TextDecoderStream()).getReader();
  let out = "";
  while (!/held \d+/.test(out)) {
    const { value, done } = await reader.read();
    if (done) throw new Error(`the flooder exited: ${out}`);
    out += value;
  }
  return {
    async [Symbol.asyncDispose]() {
      await child.stdin.close();
      await reader.cancel();
      await child.status;
    },
  };
}

async function enrolFresh(pki: TestPki, sid: string) {
  const keys = await generateRsaKeyPair(2048);
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
