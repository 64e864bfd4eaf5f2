/**
 * Finding 1 of the audit: the enrolment code never crosses the wire. The student proves it with a
 * binding (HMAC under the code's key over the ID and the CSR), so someone on the path who copies a
 * request can neither read the code nor move the binding onto a CSR of their own.
 */

import assert from "node:assert/strict";
import { caProtocol, codeKey, enrolmentBinding, requestCertificate } from "../../lib/ca/mod.ts";
import { createCsr, der } from "../../lib/pki/mod.ts";
import { encodeFrame } from "../../lib/wire/mod.ts";
import { TestPki } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const VICTIM = "1155000777";

async function spkiOf(keys: CryptoKeyPair): Promise<Uint8Array> {
  return new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey));
}

/** Sends one CSR frame and returns the CA's decoded answer. */
async function exchange(port: number, frame: Uint8Array) {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  try {
    await conn.write(frame);
    const chunks: Uint8Array[] = [];
    const buf = new Uint8Array(8192);
    for (let n = await conn.read(buf); n !== null; n = await conn.read(buf)) {
      chunks.push(buf.slice(0, n));
    }
    const all = new Uint8Array(chunks.reduce((a, c) => a + c.length, 0));
    let off = 0;
    for (const c of chunks) all.set(c, off), off += c.length;
    return caProtocol.decode(all.subarray(4));
  } finally {
    try {
      conn.close();
    } catch { /* closed by the CA */ }
  }
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return true;
  }
  return false;
}

Deno.test("the enrolment request carries a binding, never the code, in any form", async () => {
  await using pki = await TestPki.start();
  const keys = await testKeyPair();
  const csr = der(await createCsr(keys, VICTIM));
  const { code } = pki.ca.createCode(VICTIM);
  const binding = await enrolmentBinding(await codeKey(code), VICTIM, csr);
  const frame = encodeFrame(caProtocol.encode("csr", { sid: VICTIM, binding, csr }));
  const enc = new TextEncoder();
  for (const form of [code, code.replaceAll("-", ""), code.toUpperCase()]) {
    assert.ok(!contains(frame, enc.encode(form)), `the code (${form}) is in the request`);
  }
  // Nor the key the CA keeps for it.
  assert.ok(!contains(frame, await codeKey(code)), "the code's key is in the request");
  assert.equal((await exchange(pki.server.port, frame)).type, "certificate");
});

Deno.test("a binding copied onto another CSR is refused, and the victim's code still works", async () => {
  await using pki = await TestPki.start();
  const victimKeys = await testKeyPair();
  const victimCsr = der(await createCsr(victimKeys, VICTIM));
  const { code } = pki.ca.createCode(VICTIM);
  const binding = await enrolmentBinding(await codeKey(code), VICTIM, victimCsr);

  // Trudy reads the victim's request on the path and swaps in her own CSR for the victim's ID.
  const trudyCsr = der(await createCsr(await testKeyPair(), VICTIM));
  const swapped = await exchange(
    pki.server.port,
    encodeFrame(caProtocol.encode("csr", { sid: VICTIM, binding, csr: trudyCsr })),
  );
  assert.equal(swapped.type, "error");
  assert.match((swapped as { reason: string }).reason, /code is not valid for 1155000777/);
  assert.equal(pki.ca.ledger().length, 0, "nothing issued to Trudy");

  // Nor may she keep the victim's CSR under another ID, or an empty binding.
  const otherId = await exchange(
    pki.server.port,
    encodeFrame(caProtocol.encode("csr", { sid: "1155000778", binding, csr: victimCsr })),
  );
  assert.equal(otherId.type, "error");
  const empty = await exchange(
    pki.server.port,
    encodeFrame(
      caProtocol.encode("csr", { sid: VICTIM, binding: new Uint8Array(0), csr: victimCsr }),
    ),
  );
  assert.equal(empty.type, "error");

  // The code was not burned: the victim's own request (same code) is served.
  const cert = await requestCertificate({
    ca: { hostname: "127.0.0.1", port: pki.server.port },
    sid: VICTIM,
    code,
    csr: victimCsr,
    publicKey: await spkiOf(victimKeys),
    root: pki.root,
  });
  assert.equal(cert.subject, `CN=${VICTIM}`);
  assert.equal(pki.ca.ledger().length, 1);
});

Deno.test("with several codes issued for one ID, the one that binds the CSR is the one consumed", async () => {
  await using pki = await TestPki.start();
  const keys = await testKeyPair();
  const csr = der(await createCsr(keys, VICTIM));
  const first = pki.ca.createCode(VICTIM).code;
  const second = pki.ca.createCode(VICTIM).code;
  const send = async (code: string) =>
    await exchange(
      pki.server.port,
      encodeFrame(caProtocol.encode("csr", {
        sid: VICTIM,
        binding: await enrolmentBinding(await codeKey(code), VICTIM, csr),
        csr,
      })),
    );
  const issued = await send(second);
  assert.equal(issued.type, "certificate");
  // The same request a second time (a replayed copy) gets the same certificate, signed once.
  assert.deepEqual(await send(second), issued);
  assert.equal(pki.ca.ledger().length, 1);
  assert.equal((await send(first)).type, "certificate", "the other code is still unused");
});
