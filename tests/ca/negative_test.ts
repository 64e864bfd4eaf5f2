/**
 * The CA's checks one at a time (lib/ca), each with input that only that check refuses, asserting
 * the refusal and which rule refused (`EnrolmentError.reason`), so that `deno task mutate` kills
 * the check's mutant: the enrolment code's binding, expiry and single use (both layers: the ledger
 * check before signing, and the UPDATE that consumes the code), the ID's form, the CN against the
 * ID, the root's files at start, and the student's check that cert 2 carries its own key.
 */

import assert from "node:assert/strict";
import {
  caProtocol,
  CertificateAuthority,
  EnrolmentError,
  type EnrolmentRefusal,
  requestCertificate,
  serialOf,
} from "../../lib/ca/mod.ts";
import {
  type Certificate,
  CertificateError,
  createCsr,
  der,
  exportPrivateKeyPem,
} from "../../lib/pki/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { memoryLog, tempDir, TestPki, withVerifyHook } from "../_fixtures/helpers.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000701";
const OTHER = "1155000702";

async function openCa(dir: string): Promise<CertificateAuthority> {
  return await CertificateAuthority.open(`${dir}/ca`, {
    rootKeys: await testKeyPair(),
  });
}

async function csrFor(cn: string, keys?: CryptoKeyPair): Promise<Uint8Array> {
  return der(await createCsr(keys ?? await testKeyPair(), cn));
}

async function refusedBy(
  p: Promise<Certificate>,
  reason: EnrolmentRefusal,
  message: string,
): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof EnrolmentError, `not an EnrolmentError: ${err}`);
    assert.equal(err.reason, reason, err.message);
    assert.equal(err.message, message);
    return true;
  });
}

Deno.test("CA: a code used a second time is refused by the ledger check, before anything is signed", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const { code } = ca.createCode(SID);
  const keys = await testKeyPair();
  await ca.enrol({ sid: SID, code, csr: await csrFor(SID, keys) });
  // The same student, the same code, a CSR for another key: the pre-check refuses (not the UPDATE).
  await refusedBy(
    ca.enrol({ sid: SID, code, csr: await csrFor(SID, await testKeyPair()) }),
    "code-used",
    "Enrolment code has already been used",
  );
  assert.equal(ca.ledger().length, 1);
});

Deno.test("CA: the same request again (a retry after a lost reply, or a replayed copy) gets the same certificate, and nothing is signed", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const { code } = ca.createCode(SID);
  const keys = await testKeyPair();
  const csr = await csrFor(SID, keys);
  const first = await ca.enrol({ sid: SID, code, csr });
  let told = "";
  const again = await ca.enrol({ sid: SID, code, csr, onAgain: (serial) => told = serial });
  assert.equal(again.serialNumber, first.serialNumber);
  assert.equal(told, serialOf(first));
  assert.equal(ca.ledger().length, 1, "nothing new signed");
  // Once revoked, the certificate is not handed out again: the code stays spent.
  ca.revoke({ serial: serialOf(first) });
  await refusedBy(
    ca.enrol({ sid: SID, code, csr }),
    "code-used",
    "Enrolment code has already been used",
  );
  assert.equal(ca.ledger().length, 1);
});

Deno.test("CA: a code consumed while a request is being signed: the UPDATE that consumes it refuses that request", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const { code } = ca.createCode(SID);
  const [a, b] = await Promise.all([csrFor(SID), csrFor(SID)]);
  // Request A passes the ledger check (the code is unused), then verifies its CSR's signature: at
  // that moment request B, with the same code, is enrolled to the end. The first signature
  // verification after the ledger check is A's, so the interleaving is exact, not a race.
  let meanwhile: (() => Promise<unknown>) | undefined = () => ca.enrol({ sid: SID, code, csr: b! });
  let second: Promise<unknown> | undefined;
  await withVerifyHook(
    async () => {
      const run = meanwhile;
      meanwhile = undefined;
      if (run) await (second = run());
    },
    () =>
      refusedBy(
        ca.enrol({ sid: SID, code, csr: a! }),
        "code-used-meanwhile",
        "Enrolment code has already been used",
      ),
  );
  assert.ok(second, "B was not enrolled while A was being checked");
  await second;
  assert.equal(ca.ledger().length, 1, "A's certificate was not recorded");
});

Deno.test("CA: a retry that races its own first attempt (same key, same code, both signing at once) gets the first attempt's certificate", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const { code } = ca.createCode(SID);
  const csr = await csrFor(SID);
  // The same interleaving as above, but B is the same request as A (a retry of it).
  let meanwhile: (() => Promise<Certificate>) | undefined = () => ca.enrol({ sid: SID, code, csr });
  let first: Promise<Certificate> | undefined;
  let told = "";
  const retry = await withVerifyHook(
    async () => {
      const run = meanwhile;
      meanwhile = undefined;
      if (run) await (first = run());
    },
    () => ca.enrol({ sid: SID, code, csr, onAgain: (serial) => told = serial }),
  );
  assert.ok(first, "the first attempt did not run while the retry was being checked");
  const issued = await first;
  assert.equal(retry.serialNumber, issued.serialNumber, "the retry got another certificate");
  assert.equal(told, serialOf(issued));
  assert.equal(ca.ledger().length, 1, "the retry's own signature was recorded");
});

Deno.test("CA: no code, an expired code, a wrong code and a code of another ID are refused with their reasons", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const csr = await csrFor(SID);
  const expired = ca.createCode(SID, 60_000, Date.now() - 120_000).code;
  await refusedBy(
    ca.enrol({ sid: SID, code: expired, csr }),
    "code-expired",
    "Enrolment code has expired",
  );
  ca.createCode(SID);
  // No code at all (what the seeds' open enrolment accepts).
  await refusedBy(
    ca.enrol({ sid: SID, csr }),
    "code-invalid",
    `Enrolment code is not valid for ${SID}`,
  );
  await refusedBy(
    ca.enrol({ sid: SID, code: "00000000-00000000-00000000-00000000", csr }),
    "code-invalid",
    `Enrolment code is not valid for ${SID}`,
  );
  const others = ca.createCode(OTHER).code;
  await refusedBy(
    ca.enrol({ sid: SID, code: others, csr }),
    "code-invalid",
    `Enrolment code is not valid for ${SID}`,
  );
  assert.deepEqual(ca.ledger(), []);
});

Deno.test("CA: a 9-digit ID is refused even with a matching CN and a code issued for it", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const short = SID.slice(1);
  const { code } = ca.createCode(short);
  await refusedBy(
    ca.enrol({ sid: short, code, csr: await csrFor(short) }),
    "bad-id",
    `Student ID must be exactly 10 digits, got '${short}'`,
  );
  assert.deepEqual(ca.ledger(), []);
});

Deno.test("CA: a CSR whose CN is another ID is refused, even bound by this ID's code", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  using ca = await openCa(dir.path);
  const { code } = ca.createCode(SID);
  await refusedBy(
    ca.enrol({ sid: SID, code, csr: await csrFor(OTHER) }),
    "cn-mismatch",
    `CSR's CN ${OTHER} does not match the requested ID ${SID}`,
  );
  assert.deepEqual(ca.ledger(), []);
});

Deno.test("CA start: a root key readable by others, a key of another root, half a root, no CA: refused", async () => {
  await using dir = await tempDir("lab-ca-neg-");
  const caDir = `${dir.path}/ca`;
  (await openCa(dir.path)).close();
  const keyPath = `${caDir}/cuhk.key`;
  const certPath = `${caDir}/cuhk.cer`;
  const key = await Deno.readTextFile(keyPath);

  await Deno.chmod(keyPath, 0o644);
  await assert.rejects(
    openCa(dir.path),
    new RegExp(`^Error: Refusing to use ${keyPath}: mode 644 lets others read the key`),
  );
  await Deno.chmod(keyPath, 0o600);

  await Deno.writeTextFile(
    keyPath,
    await exportPrivateKeyPem((await testKeyPair()).privateKey),
  );
  await assert.rejects(
    openCa(dir.path),
    new RegExp(`^Error: ${keyPath} is not the key of ${certPath}: refusing to start`),
  );

  await Deno.remove(keyPath);
  await assert.rejects(
    openCa(dir.path),
    new RegExp(`^Error: Found ${certPath} but not ${keyPath}: refusing to make a new root`),
  );
  assert.equal(await Deno.stat(keyPath).then(() => true, () => false), false);

  await Deno.remove(certPath);
  await Deno.writeTextFile(keyPath, key, { mode: 0o600 });
  await assert.rejects(
    openCa(dir.path),
    new RegExp(`^Error: Found ${keyPath} but not ${certPath}: refusing to make a new root`),
  );
  assert.equal(await Deno.readTextFile(keyPath), key, "the old key was kept");

  await assert.rejects(
    CertificateAuthority.open(`${dir.path}/nowhere`, { create: false }),
    /^Error: No CA in .*nowhere \(no cuhk\.cer\)/,
  );
  assert.equal(await Deno.stat(`${dir.path}/nowhere`).then(() => true, () => false), false);
});

Deno.test("the student refuses a genuine cert 2 for its ID that carries another key (swapped on the path)", async () => {
  await using pki = await TestPki.start();
  // Trudy holds a genuine certificate for the victim's ID, with her own key.
  const trudyCert = (await pki.student(SID)).cert;
  await using relay = startRelay({
    upstream: { hostname: "127.0.0.1", port: pki.server.port },
    log: memoryLog("Trudy").log,
    onFrame: (direction, frame) => {
      if (direction !== "toClient") return frame;
      const msg = caProtocol.decode(frame);
      if (msg.type !== "certificate") return frame;
      return caProtocol.encode("certificate", { certificate: der(trudyCert) });
    },
  });
  const keys = await testKeyPair();
  await assert.rejects(
    requestCertificate({
      ca: relay.addr,
      sid: SID,
      code: pki.ca.createCode(SID).code,
      csr: await csrFor(SID, keys),
      publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
      root: pki.root,
    }),
    (err: unknown) => {
      assert.ok(err instanceof CertificateError, String(err));
      assert.equal(err.message, "Cert 2 from the CA does not carry the key of this CSR");
      return true;
    },
  );
});
