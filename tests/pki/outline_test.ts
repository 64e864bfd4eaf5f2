/**
 * The certificate outline (lib/pki/der.ts) that the certificate checks read instead of
 * @peculiar/x509's extension objects: it must read what the library reads on the lab's own
 * certificates and on OpenSSL's, refuse what has another outline, and `verifyCertificate` must
 * refuse an extension it cannot read, or one that is there twice.
 */

import assert from "node:assert/strict";
import { concatBytes } from "../../lib/crypto/mod.ts";
import {
  basicConstraintsCa,
  type Certificate,
  CertificateError,
  certificateOutline,
  createRoot,
  der,
  extendedKeyUsages,
  issueCertificate,
  keyUsageFlags,
  OID,
  oidText,
  parseCertificate,
  signedParts,
  signRsa,
  verifyCertificate,
  type VerifyOptions,
  x509,
} from "../../lib/pki/mod.ts";
import { run, tempDir } from "../_fixtures/helpers.ts";
import { leafCertificate, studentProfile } from "../_fixtures/leaf.ts";
import { testKeyPair } from "../_fixtures/keys.ts";

const SID = "1155000777";
const ca = await createRoot({ keys: await testKeyPair() });
const leafKeys = await testKeyPair();
const leafSpki = new Uint8Array(await crypto.subtle.exportKey("spki", leafKeys.publicKey));
const asStudent: VerifyOptions = {
  root: ca.cert,
  purpose: "clientAuth",
  expectedCommonName: SID,
  keyEncipherment: true,
};

/** The outline must read each part exactly as the library does. */
function assertOutlineAgrees(cert: Certificate): void {
  const outline = certificateOutline(der(cert));
  assert.ok(outline, `no outline for ${cert.subject}`);
  assert.deepEqual(outline.issuer, new Uint8Array(cert.issuerName.toArrayBuffer()));
  assert.deepEqual(outline.subject, new Uint8Array(cert.subjectName.toArrayBuffer()));
  assert.deepEqual(outline.publicKey, new Uint8Array(cert.publicKey.rawData));
  assert.deepEqual(
    outline.extensions.map((e) => [e.id, e.critical, [...e.value]]),
    [...cert.extensions].map((e) => [e.type, e.critical, [...new Uint8Array(e.value)]]),
  );
  for (const ext of outline.extensions) {
    if (ext.id === OID.basicConstraints) {
      const bc = cert.getExtension(x509.BasicConstraintsExtension)!;
      assert.equal(basicConstraintsCa(ext.value), bc.ca);
    } else if (ext.id === OID.keyUsage) {
      const ku = cert.getExtension(x509.KeyUsagesExtension)!;
      assert.equal(keyUsageFlags(ext.value), ku.usages);
    } else if (ext.id === OID.extKeyUsage) {
      const eku = cert.getExtension(x509.ExtendedKeyUsageExtension)!;
      assert.deepEqual(extendedKeyUsages(ext.value), [...eku.usages].map(String));
    }
  }
}

Deno.test("outline: reads what @peculiar/x509 reads, on the lab's certificates and OpenSSL's", async () => {
  const student = await issueCertificate({
    publicKey: leafSpki,
    profile: { kind: "student", sid: SID },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  const server = await issueCertificate({
    publicKey: leafSpki,
    profile: {
      kind: "server",
      commonName: "blackboard",
      dnsNames: ["blackboard", "localhost"],
      ipAddresses: ["127.0.0.1"],
    },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  for (const cert of [ca.cert, student, server]) assertOutlineAgrees(cert);
  assert.equal(certificateOutline(der(student))!.extensions.length, 5);

  // OpenSSL's encoder: a path length, key usage across two bytes (decipherOnly is bit 8), several
  // purposes, one of them private.
  await using dir = await tempDir();
  const made = await run("openssl", [
    "req",
    "-x509",
    "-newkey",
    "rsa:2048",
    "-nodes",
    "-keyout",
    `${dir.path}/k.pem`,
    "-out",
    `${dir.path}/c.pem`,
    "-subj",
    "/C=HK/O=Outline test/CN=openssl",
    "-addext",
    "basicConstraints=critical,CA:TRUE,pathlen:3",
    "-addext",
    "keyUsage=critical,digitalSignature,nonRepudiation,keyEncipherment,decipherOnly",
    "-addext",
    "extendedKeyUsage=clientAuth,serverAuth,1.3.6.1.4.1.99999.7",
    "-addext",
    "subjectAltName=DNS:a.example,IP:127.0.0.1",
  ]);
  assert.equal(made.code, 0, made.stderr);
  const openssl = parseCertificate(await Deno.readTextFile(`${dir.path}/c.pem`), "openssl's");
  assertOutlineAgrees(openssl);
  const ku = certificateOutline(der(openssl))!.extensions.find((e) => e.id === OID.keyUsage)!;
  const F = x509.KeyUsageFlags;
  assert.equal(
    keyUsageFlags(ku.value),
    F.digitalSignature | F.nonRepudiation | F.keyEncipherment | F.decipherOnly,
  );
});

Deno.test("outline: every combination of key usages reads as the library writes it", () => {
  for (let flags = 0; flags < 512; flags++) {
    const ext = new x509.KeyUsagesExtension(flags, true);
    assert.equal(keyUsageFlags(new Uint8Array(ext.value)), flags, `flags ${flags}`);
  }
});

Deno.test("outline: every one- and two-byte key usage reads as the library reads it, or is refused when a bit declared unused is set", () => {
  const library = (value: Uint8Array<ArrayBuffer>) =>
    new x509.KeyUsagesExtension(new x509.Extension(OID.keyUsage, true, value).rawData).usages;
  let refused = 0;
  for (let unused = 0; unused < 8; unused++) {
    for (let byte = 0; byte < 256; byte++) {
      for (
        const value of [Uint8Array.of(3, 2, unused, byte), Uint8Array.of(3, 3, unused, 0xff, byte)]
      ) {
        const ours = keyUsageFlags(value);
        const padding = byte & ((1 << unused) - 1);
        if (padding !== 0) {
          assert.equal(ours, undefined, `${toHexText(value)}: a bit declared unused is set`);
          refused++;
          continue;
        }
        // The library reads nine bits at most: decipherOnly is bit 8.
        assert.equal(ours, library(value) & 0x1ff, toHexText(value));
      }
    }
  }
  assert.ok(refused > 0);
  // digitalSignature, with keyEncipherment (or more) set only in bits declared unused.
  for (const text of ["030207a0", "030206a0", "030207ff"]) {
    assert.equal(keyUsageFlags(hex(text)), undefined, text);
  }
  assert.equal(keyUsageFlags(hex("030205a0")), 5);
  assert.equal(keyUsageFlags(hex("03010f")), undefined); // no bits, yet unused bits declared
  assert.equal(keyUsageFlags(hex("030100")), 0);
});

Deno.test("outline: object identifiers, and the encodings that are refused", () => {
  const oid = (text: string) => oidText(hex(text));
  assert.equal(oid("551d13"), "2.5.29.19");
  assert.equal(oid("2b0601050507030201"), "1.3.6.1.5.5.7.3.2.1");
  assert.equal(oid("2b06010401860d01"), "1.3.6.1.4.1.781.1");
  assert.equal(oid("8837"), "2.999"); // a first arc of 2 with a second over 39
  assert.equal(oid("00"), "0.0");
  assert.equal(oid(""), undefined); // empty
  assert.equal(oid("2b8001"), undefined); // not minimal: 0x80 leads an arc
  assert.equal(oid("2b86"), undefined); // cut inside an arc
  assert.equal(oid("2b" + "ff".repeat(8) + "7f"), undefined); // an arc beyond 2^53
});

Deno.test("outline: a DER of another shape has no outline, and its parts are refused", async () => {
  const student = der(
    await issueCertificate({
      publicKey: leafSpki,
      profile: { kind: "student", sid: SID },
      issuer: ca.cert,
      issuerKey: ca.keys.privateKey,
    }),
  );
  assert.ok(certificateOutline(student));
  assert.equal(certificateOutline(student.subarray(0, student.length - 1)), undefined);
  assert.equal(certificateOutline(concatBytes(student, Uint8Array.of(0))), undefined);
  assert.equal(certificateOutline(new Uint8Array(0)), undefined);
  // An element after the extensions, an empty list of extensions, a two-byte BOOLEAN.
  const ext = tlv(0x30, hex("0603551d13"), hex("0101ff"), tlv(0x04, hex("3000")));
  const withTbs = async (tail: Uint8Array[]) =>
    certificateOutline(await signedCertificate(tbsWith(student, tail)));
  assert.ok(await withTbs([tlv(0xa3, tlv(0x30, ext))]));
  assert.equal(await withTbs([tlv(0xa3, tlv(0x30, ext)), hex("0500")]), undefined);
  assert.equal(await withTbs([tlv(0xa3, tlv(0x30))]), undefined);
  const longBoolean = tlv(0x30, hex("0603551d13"), hex("0102ffff"), tlv(0x04, hex("3000")));
  assert.equal(await withTbs([tlv(0xa3, tlv(0x30, longBoolean))]), undefined);

  assert.equal(basicConstraintsCa(hex("3000")), false);
  assert.equal(basicConstraintsCa(hex("30030101ff")), true);
  assert.equal(basicConstraintsCa(hex("30060101ff020103")), true);
  assert.equal(basicConstraintsCa(hex("3003020103")), false); // a path length alone
  assert.equal(basicConstraintsCa(hex("30030101")), undefined); // cut
  assert.equal(basicConstraintsCa(hex("3003040100")), undefined); // not a BOOLEAN or INTEGER
  assert.equal(basicConstraintsCa(hex("30000000")), undefined); // bytes after it
  assert.equal(keyUsageFlags(hex("0300")), undefined); // no unused-bits byte
  assert.equal(keyUsageFlags(hex("03020880")), undefined); // eight unused bits
  assert.equal(keyUsageFlags(hex("04020780")), undefined); // an OCTET STRING
  assert.deepEqual(extendedKeyUsages(hex("3000")), []);
  assert.equal(extendedKeyUsages(hex("30020500")), undefined); // a NULL among the purposes
});

// ---------------------------------------------------------------- verifying

function toHexText(bytes: Uint8Array): string {
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

function hex(text: string): Uint8Array<ArrayBuffer> {
  return Uint8Array.from((text.match(/../g) ?? []).map((h) => parseInt(h, 16)));
}

/** One DER element (short or two-byte long form is all these tests need). */
function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const body = concatBytes(...contents);
  const n = body.length;
  const head = n < 0x80 ? [tag, n] : n < 0x100 ? [tag, 0x81, n] : [tag, 0x82, n >> 8, n & 0xff];
  return concatBytes(Uint8Array.from(head), body);
}

/** A certificate's TBS with everything after its key replaced by `tail`. */
function tbsWith(certDer: Uint8Array, tail: Uint8Array[]): Uint8Array {
  const outline = certificateOutline(certDer)!;
  const tbs = signedParts(certDer, "certificate")!.tbs;
  const keyEnd = outline.publicKey.byteOffset + outline.publicKey.length - tbs.byteOffset;
  const headLength = tbs[1]! & 0x80 ? 2 + (tbs[1]! & 0x7f) : 2;
  return tlv(0x30, tbs.subarray(headLength, keyEnd), ...tail);
}

/** `tbs` signed by the root, as a certificate's DER. */
async function signedCertificate(tbs: Uint8Array): Promise<Uint8Array> {
  const signature = await signRsa(ca.keys.privateKey, tbs);
  const algorithm = hex("300d06092a864886f70d01010b0500");
  return tlv(0x30, tbs, algorithm, tlv(0x03, Uint8Array.of(0), signature));
}

/** A student leaf with these extensions, signed by the root. */
async function leaf(extensions: x509.Extension[]): Promise<Certificate> {
  return await leafCertificate({ ca, publicKey: leafSpki, subject: `CN=${SID}`, extensions });
}

async function refused(cert: Certificate | Uint8Array, reason: RegExp): Promise<void> {
  const parsed = cert instanceof Uint8Array ? parseCertificate(cert) : cert;
  await assert.rejects(verifyCertificate(parsed, asStudent), (err: unknown) => {
    assert.ok(err instanceof CertificateError, String(err));
    assert.match(err.message, reason);
    return true;
  });
}

Deno.test("verify: an extension that is there twice is refused, whichever comes first", async () => {
  await verifyCertificate(await leaf(studentProfile()), asStudent);
  const [bc, ku, eku] = studentProfile();
  const serverEku = new x509.ExtendedKeyUsageExtension([OID.serverAuth], false);
  await refused(
    await leaf([bc!, ku!, eku!, serverEku]),
    /it has the extension 2\.5\.29\.37 twice$/,
  );
  await refused(
    await leaf([bc!, ku!, serverEku, eku!]),
    /it has the extension 2\.5\.29\.37 twice$/,
  );
  const caBc = new x509.BasicConstraintsExtension(true, undefined, true);
  await refused(await leaf([bc!, caBc, ku!, eku!]), /it has the extension 2\.5\.29\.19 twice$/);
});

Deno.test("verify: an extension whose value cannot be read is refused, not skipped", async () => {
  const [bc, ku, eku] = studentProfile();
  // digitalSignature, and keyEncipherment only in bits the string declares unused.
  await refused(
    await leaf([bc!, new x509.Extension(OID.keyUsage, true, hex("030207a0")), eku!]),
    /its key usage extension cannot be read$/,
  );
  const bad = (id: string, critical: boolean) => new x509.Extension(id, critical, hex("0500"));
  await refused(
    await leaf([bad(OID.basicConstraints, true), ku!, eku!]),
    /its basic constraints extension cannot be read$/,
  );
  await refused(
    await leaf([bc!, bad(OID.keyUsage, true), eku!]),
    /its key usage extension cannot be read$/,
  );
  await refused(
    await leaf([bc!, ku!, bad(OID.extKeyUsage, false)]),
    /its extended key usage extension cannot be read$/,
  );
});

Deno.test("verify: an unknown extension marked critical with any true BOOLEAN is refused", async () => {
  const unknown = "1.3.6.1.4.1.99999.1";
  const cert = der(
    await leaf([...studentProfile(), new x509.Extension(unknown, true, hex("0500"))]),
  );
  // The library writes TRUE as 0xff; BER's other true values (here 0x01) are critical too.
  const tbs = new Uint8Array(signedParts(cert, "certificate")!.tbs);
  const marker = [...tbs].findIndex((_, i) =>
    tbs[i] === 0x01 && tbs[i + 1] === 0x01 && tbs[i + 2] === 0xff && tbs[i + 3] === 0x04 &&
    tbs[i + 5] === 0x05
  );
  assert.ok(marker > 0);
  tbs[marker + 2] = 0x01;
  await refused(
    await signedCertificate(tbs),
    /unknown critical extension 1\.3\.6\.1\.4\.1\.99999\.1$/,
  );
  // A certificate with an element after its extensions is refused as a whole.
  const student = der(await leaf(studentProfile()));
  const extra = await signedCertificate(
    tbsWith(student, [
      tlv(0xa3, tlv(0x30, ...studentProfile().map((e) => new Uint8Array(e.rawData)))),
      hex("0500"),
    ]),
  );
  await assert.rejects(
    (async () => await verifyCertificate(parseCertificate(extra), asStudent))(),
    CertificateError,
  );
});
