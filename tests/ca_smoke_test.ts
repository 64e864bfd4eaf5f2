import assert from "node:assert/strict";
import { TestPki } from "./helpers.ts";
import { verifyCertificate } from "../lib/pki.ts";

Deno.test("a test PKI issues a student and a server certificate that verify", async () => {
  await using pki = await TestPki.start();
  const s = await pki.student("1155000001");
  await verifyCertificate(s.cert, {
    root: pki.root,
    purpose: "clientAuth",
    expectedCommonName: "1155000001",
  });
  const srv = await pki.serverCert("localhost");
  await verifyCertificate(srv.cert, {
    root: pki.root,
    purpose: "serverAuth",
    expectedHost: "127.0.0.1",
  });
  assert.equal(pki.ca.ledger().length, 2);
});
