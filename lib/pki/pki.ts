/**
 * PKI on @peculiar/x509: keys, CSRs, the root, issuing, CRLs, and verifying a certificate against
 * a pinned root. The library's chain builder checks only names and signatures, so everything else
 * (dates, CA flag, key usage, extended key usage, critical extensions, revocation, names) is
 * checked here, explicitly, with one clear reason per failure.
 */

import "reflect-metadata";
import * as x509 from "@peculiar/x509";
import { AsnConvert } from "@peculiar/asn1-schema";
import {
  CRLNumber,
  id_ce_cRLNumber,
  SubjectPublicKeyInfo as SubjectPublicKeyInfoSchema,
} from "@peculiar/asn1-x509";
import { randomBytes, toBytes, toHex } from "../crypto/mod.ts";
import { bytesKey, keyProblems, parsedOnce, signatureVerifies } from "./cache.ts";
import { generateRsaKeyPair, RSA_SIGN, signedBy } from "./rsa.ts";
import {
  basicConstraintsCa,
  type CertificateOutline,
  certificateOutline,
  extendedKeyUsages,
  keyUsageFlags,
} from "./der.ts";

x509.cryptoProvider.set(crypto);

export { x509 };
export type Certificate = x509.X509Certificate;
export type Crl = x509.X509Crl;
export type Csr = x509.Pkcs10CertificateRequest;

export const OID = {
  commonName: "2.5.4.3",
  basicConstraints: "2.5.29.19",
  keyUsage: "2.5.29.15",
  extKeyUsage: "2.5.29.37",
  subjectKeyId: "2.5.29.14",
  authorityKeyId: "2.5.29.35",
  subjectAltName: "2.5.29.17",
  clientAuth: "1.3.6.1.5.5.7.3.2",
  serverAuth: "1.3.6.1.5.5.7.3.1",
  rsaEncryption: "1.2.840.113549.1.1.1",
} as const;

/** Extensions this verifier understands; any other critical extension makes a certificate invalid. */
const KNOWN_EXTENSIONS: ReadonlySet<string> = new Set([
  OID.basicConstraints,
  OID.keyUsage,
  OID.extKeyUsage,
  OID.subjectKeyId,
  OID.authorityKeyId,
  OID.subjectAltName,
]);

/** A certificate that fails verification; the message says which check failed. */
export class CertificateError extends Error {
  override name = "CertificateError";
}

/** A CSR the CA refuses; the message says why. */
export class CsrError extends Error {
  override name = "CsrError";
}

// ---------------------------------------------------------------- parsing

/**
 * The SHA-256 fingerprint of a certificate, as `openssl x509 -noout -fingerprint -sha256` prints
 * it (upper-case hex pairs joined by colons): what a student compares out of band with the root's.
 */
export async function certificateFingerprint(cert: { rawData: ArrayBuffer }): Promise<string> {
  const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", cert.rawData));
  return [...digest].map((b) => b.toString(16).padStart(2, "0").toUpperCase()).join(":");
}

/** Parses a certificate from PEM or DER, with a clear error. */
export function parseCertificate(data: string | Uint8Array, what = "certificate"): Certificate {
  try {
    return parsedOnce(
      "cert",
      data,
      () => new x509.X509Certificate(typeof data === "string" ? data : toBytes(data)),
    );
  } catch (err) {
    throw new CertificateError(
      `Cannot read ${what}: not an X.509 certificate (${err instanceof Error ? err.message : err})`,
    );
  }
}

export function parseCsr(data: string | Uint8Array): Csr {
  try {
    return new x509.Pkcs10CertificateRequest(typeof data === "string" ? data : toBytes(data));
  } catch {
    throw new CsrError("Cannot read CSR: not a PKCS#10 certificate request");
  }
}

export function parseCrl(data: string | Uint8Array): Crl {
  try {
    return parsedOnce(
      "crl",
      data,
      () => new x509.X509Crl(typeof data === "string" ? data : toBytes(data)),
    );
  } catch {
    throw new CertificateError("Cannot read CRL: not an X.509 CRL");
  }
}

export function certificatePem(cert: Certificate): string {
  return cert.toString("pem") + "\n";
}

/** PEM with the `X509 CRL` label that OpenSSL and GnuTLS read. */
export function crlPem(crl: Crl): string {
  return x509.PemConverter.encode(crl.rawData, "X509 CRL") + "\n";
}

export function der(obj: { rawData: ArrayBuffer }): Uint8Array {
  return new Uint8Array(obj.rawData);
}

/** The certificate's single common name, or undefined. */
export function commonName(cert: Certificate | Csr): string | undefined {
  const cns = cert.subjectName.getField(OID.commonName);
  return cns.length === 1 ? cns[0] : undefined;
}

/** A short name for messages: the CN, else the serial. */
export function certificateLabel(cert: Certificate): string {
  return commonName(cert) ?? `serial ${cert.serialNumber}`;
}

// ---------------------------------------------------------------- issuing

/** A random positive serial of 127 bits from the CSPRNG (RFC 5280 allows up to 20 octets). */
export function randomSerial(): string {
  const bytes = randomBytes(16);
  bytes[0] = (bytes[0]! & 0x7f) | 0x40; // positive, and no leading zero byte to strip
  return toHex(bytes);
}

export const DAY_MS = 86_400_000;

export interface RootOptions {
  name?: string;
  bits?: number;
  /** The root's key pair (extractable), when it exists already; default: a fresh one of `bits`. */
  keys?: CryptoKeyPair;
  validityDays?: number;
  now?: Date;
}

export const ROOT_NAME = "CN=CUHK Root CA, O=The Chinese University of Hong Kong, C=HK";

/** Step 0: a root key pair and self-signed root certificate (CA:TRUE, keyCertSign, cRLSign, SKI). */
export async function createRoot(
  options: RootOptions = {},
): Promise<{ cert: Certificate; keys: CryptoKeyPair }> {
  const keys = options.keys ?? await generateRsaKeyPair(options.bits ?? 3072);
  const now = options.now ?? new Date();
  const ski = await x509.SubjectKeyIdentifierExtension.create(keys.publicKey);
  const cert = await x509.X509CertificateGenerator.createSelfSigned({
    serialNumber: randomSerial(),
    name: options.name ?? ROOT_NAME,
    notBefore: new Date(now.getTime() - 60_000),
    notAfter: new Date(now.getTime() + (options.validityDays ?? 3650) * DAY_MS),
    signingAlgorithm: RSA_SIGN,
    keys,
    extensions: [
      new x509.BasicConstraintsExtension(true, undefined, true),
      new x509.KeyUsagesExtension(
        x509.KeyUsageFlags.keyCertSign | x509.KeyUsageFlags.cRLSign,
        true,
      ),
      ski,
      new x509.AuthorityKeyIdentifierExtension(ski.keyId),
    ],
  });
  return { cert, keys };
}

/** A CSR with CN = `cn`, signed by the key it carries. */
export async function createCsr(keys: CryptoKeyPair, cn: string): Promise<Csr> {
  return await x509.Pkcs10CertificateRequestGenerator.create({
    name: `CN=${cn}`,
    keys,
    signingAlgorithm: RSA_SIGN,
  });
}

export interface CheckedCsr {
  sid: string;
  /** DER SubjectPublicKeyInfo. */
  publicKey: Uint8Array;
}

/**
 * Step 2's checks on a student's CSR: the signature (proof of possession), exactly one CN that is a
 * 10-digit ID, an RSA key of at least 2048 bits with e = 65537. Requested extensions are ignored.
 */
export async function checkStudentCsr(csr: Csr): Promise<CheckedCsr> {
  try {
    return await checkCsrFields(csr);
  } catch (err) {
    if (err instanceof CsrError) throw err;
    // The ASN.1 inside a well-framed CSR can still be malformed (found by `deno task fuzz`).
    throw new CsrError(`Cannot read CSR: ${err instanceof Error ? err.message : String(err)}`);
  }
}

/** The largest RSA modulus this runtime's WebCrypto imports for verification. */
export const MAX_RSA_VERIFY_BITS = 4096;

async function checkCsrFields(csr: Csr): Promise<CheckedCsr> {
  const cns = csr.subjectName.getField(OID.commonName);
  // check: csr-one-cn tests/pki/negative_test.ts
  if (cns.length !== 1) throw new CsrError(`CSR must name exactly one CN, it names ${cns.length}`);
  const sid = cns[0]!;
  // check: csr-cn-ten-digits tests/pki/negative_test.ts
  if (!/^\d{10}$/.test(sid)) {
    throw new CsrError(`CSR's CN must be a 10-digit student ID, got '${sid}'`);
  }
  const problem = await rsaKeyProblem(csr.publicKey.rawData);
  if (problem) throw new CsrError(`CSR's ${problem}`);
  let ok = false;
  try {
    ok = await signedBy("csr", csr, csr.publicKey.rawData, () => csr.verify());
  } catch (err) {
    // Not a bad signature: the key could not be used at all. Say what happened; still refuse.
    throw new CsrError(
      `CSR's signature cannot be checked: ${err instanceof Error ? err.message : String(err)}`,
    );
  }
  // check: csr-proof-of-possession tests/pki/negative_test.ts
  if (!ok) throw new CsrError("CSR's signature does not match its key (no proof of possession)");
  return { sid, publicKey: new Uint8Array(csr.publicKey.rawData) };
}

/**
 * What is wrong with a subject's key for this lab, or undefined when nothing is: it must be RSA,
 * of 2048 to 4096 bits, with e = 65537. The CA applies it to a CSR at step 2 and every peer to
 * the leaf it verifies, so a certificate signed for a weak key by any other path is still refused.
 */
async function rsaKeyProblem(spki: ArrayBuffer | Uint8Array): Promise<string | undefined> {
  const id = bytesKey(spki);
  const known = keyProblems.get(id);
  if (known !== undefined) return known === "" ? undefined : known;
  const problem = await readRsaKeyProblem(
    new x509.PublicKey(spki instanceof Uint8Array ? spki.slice() : spki),
  );
  keyProblems.set(id, problem ?? "");
  return problem;
}

async function readRsaKeyProblem(spki: x509.PublicKey): Promise<string | undefined> {
  const algOid = spkiAlgorithmOid(spki);
  // check: key-rsa tests/pki/negative_test.ts tests/pki/verify_test.ts
  if (algOid !== OID.rsaEncryption) return `key must be RSA, got algorithm ${algOid}`;
  let key: CryptoKey;
  try {
    key = await spki.export(RSA_SIGN, ["verify"]);
  } catch {
    return "RSA key cannot be read";
  }
  const alg = key.algorithm as RsaHashedKeyAlgorithm;
  // check: key-size tests/pki/verify_test.ts
  if (alg.modulusLength < 2048) {
    return `RSA key has ${alg.modulusLength} bits, at least 2048 are required`;
  }
  // check: key-too-large tests/ca/robustness_test.ts tests/pki/verify_test.ts
  if (alg.modulusLength > MAX_RSA_VERIFY_BITS) {
    return `RSA key has ${alg.modulusLength} bits: RSA keys above ${MAX_RSA_VERIFY_BITS} bits ` +
      "are not supported (this runtime cannot verify with them)";
  }
  // check: key-exponent tests/pki/verify_test.ts
  if (toHex(alg.publicExponent).replace(/^0+/, "") !== "10001") {
    return "RSA public exponent must be 65537";
  }
  return undefined;
}

function spkiAlgorithmOid(spki: x509.PublicKey): string {
  // SubjectPublicKeyInfo.algorithm.algorithm, read through the library's ASN.1 schema.
  const asn = AsnConvert.parse(spki.rawData, SubjectPublicKeyInfoSchema);
  return asn.algorithm.algorithm;
}

// ---------------------------------------------------------------- CRLs

export interface CrlEntry {
  serialNumber: string;
  revocationDate: Date;
}

export interface CrlOptions {
  issuer: Certificate;
  issuerKey: CryptoKey;
  entries: CrlEntry[];
  crlNumber: number;
  now?: Date;
  /** How long the CRL is valid (default 1 day). */
  validityMs?: number;
}

/** A v2 CRL with a CRL number and authority key identifier, signed by the root. */
export async function createCrl(options: CrlOptions): Promise<Crl> {
  const now = options.now ?? new Date();
  return await x509.X509CrlGenerator.create({
    issuer: options.issuer.subjectName.toString(),
    thisUpdate: new Date(now.getTime() - 1000),
    nextUpdate: new Date(now.getTime() + (options.validityMs ?? DAY_MS)),
    signingAlgorithm: RSA_SIGN,
    signingKey: options.issuerKey,
    entries: options.entries.map((e) => ({
      serialNumber: e.serialNumber,
      revocationDate: e.revocationDate,
    })),
    extensions: [
      await x509.AuthorityKeyIdentifierExtension.create(options.issuer.publicKey),
      new x509.Extension(
        id_ce_cRLNumber,
        false,
        AsnConvert.serialize(new CRLNumber(options.crlNumber)),
      ),
    ],
  });
}

/** CRL numbers read, by CRL object (`null`: none). */
const crlNumbers = new WeakMap<Crl, number | null>();

/** The CRL number extension's value. */
export function crlNumber(crl: Crl): number | undefined {
  let number = crlNumbers.get(crl);
  if (number === undefined) {
    const ext = crl.getExtension(id_ce_cRLNumber);
    number = ext ? AsnConvert.parse(ext.value, CRLNumber).value : null;
    crlNumbers.set(crl, number);
  }
  return number ?? undefined;
}

/** Checks that a CRL comes from the root and is current. */
export async function verifyCrl(crl: Crl, root: Certificate, now = new Date()): Promise<void> {
  // check: crl-issuer tests/pki/negative_test.ts
  if (!sameName(crl.issuerName, root.subjectName)) {
    throw new CertificateError("CRL is not issued by the pinned root");
  }
  const ok = await signatureVerifies(
    root.publicKey.rawData,
    crl.rawData,
    () =>
      signedBy("crl", crl, root.publicKey.rawData, () => crl.verify({ publicKey: root.publicKey })),
  );
  // check: crl-signature tests/pki/verify_test.ts tests/pki/revocation_test.ts
  if (!ok) throw new CertificateError("CRL's signature does not match the root");
  // check: crl-not-yet-valid tests/pki/verify_test.ts
  if (crl.thisUpdate > now) throw new CertificateError("CRL is not valid yet");
  // check: crl-next-update tests/pki/verify_test.ts tests/pki/revocation_test.ts
  if (!crl.nextUpdate || crl.nextUpdate <= now) {
    throw new CertificateError("CRL has expired (next update was due)");
  }
}

// ---------------------------------------------------------------- verifying

export type Purpose = "clientAuth" | "serverAuth";

export interface VerifyOptions {
  /** The pinned root. */
  root: Certificate;
  purpose: Purpose;
  now?: Date;
  /** A CRL already checked with `verifyCrl`; a listed serial is refused. */
  crl?: Crl;
  /** The CN that the certificate must carry (a student ID). */
  expectedCommonName?: string;
  /** A DNS name or IP address that the certificate's SAN must list. */
  expectedHost?: string;
  /** Key usages required on top of digitalSignature. */
  keyEncipherment?: boolean;
}

/** Names encoded, by name object (a certificate or CRL parsed once keeps its name objects). */
const encodedNames = new WeakMap<x509.Name, Uint8Array>();

/** Whether two names have the same DER; each is encoded once (about 95 µs each, in JavaScript). */
function sameName(a: x509.Name, b: x509.Name): boolean {
  const [x, y] = [a, b].map((name) => {
    let bytes = encodedNames.get(name);
    if (!bytes) {
      bytes = new Uint8Array(name.toArrayBuffer());
      encodedNames.set(name, bytes);
    }
    return bytes;
  });
  return sameBytes(x!, y!);
}

function sameBytes(x: Uint8Array, y: Uint8Array): boolean {
  return x.length === y.length && x.every((v, i) => v === y[i]);
}

/** Outlines read, by certificate object (a certificate parsed once is outlined once). */
const outlines = new WeakMap<Certificate, CertificateOutline | null>();

/** The names, key and extensions of a certificate (`certificateOutline`), or undefined. */
function outlineOf(cert: Certificate): CertificateOutline | undefined {
  let outline = outlines.get(cert);
  if (outline === undefined) {
    outline = certificateOutline(new Uint8Array(cert.rawData)) ?? null;
    outlines.set(cert, outline);
  }
  return outline ?? undefined;
}

/**
 * Verifies a leaf certificate against the pinned root: issuer name and signature, validity of
 * both, no CA flag, critical extensions understood, key usage, extended key usage, revocation, and
 * the expected name. Throws `CertificateError("Cannot verify certificate <name>: <reason>")`.
 */
export async function verifyCertificate(cert: Certificate, options: VerifyOptions): Promise<void> {
  const label = certificateLabel(cert);
  const fail = (reason: string): never => {
    throw new CertificateError(`Cannot verify certificate ${label}: ${reason}`);
  };
  const now = options.now ?? new Date();
  const { root } = options;

  const outline = outlineOf(cert);
  const rootOutline = outlineOf(root);
  // check: cert-outline tests/pki/outline_test.ts
  if (!outline) fail("its DER does not have a certificate's outline");
  if (!rootOutline) fail("the root's DER does not have a certificate's outline");
  // check: cert-issuer tests/pki/verify_test.ts
  if (!sameBytes(outline!.issuer, rootOutline!.subject)) {
    fail("it is not issued by the pinned root");
  }
  const signed = await signatureVerifies(
    root.publicKey.rawData,
    cert.rawData,
    () =>
      signedBy(
        "certificate",
        cert,
        root.publicKey.rawData,
        () => cert.verify({ publicKey: root.publicKey, signatureOnly: true }),
      ),
  );
  // check: cert-signature tests/pki/verify_test.ts
  if (!signed) fail("signature does not match the root");
  // check: root-validity tests/pki/verify_test.ts
  if (now < root.notBefore || now > root.notAfter) fail("the root is outside its validity period");
  // check: cert-not-before tests/pki/verify_test.ts tests/blackboard/negative_test.ts
  if (now < cert.notBefore) fail(`not valid before ${cert.notBefore.toISOString()}`);
  // check: cert-not-after tests/pki/verify_test.ts
  if (now > cert.notAfter) fail(`expired on ${cert.notAfter.toISOString()}`);

  // Read from the DER itself (lib/pki/der.ts): the library's extension objects cost about 0.6 ms
  // for each new certificate, most of a student's check of cert 2.
  const extensions = new Map<string, Uint8Array>();
  for (const ext of outline!.extensions) {
    // check: cert-duplicate-extension tests/pki/outline_test.ts
    if (extensions.has(ext.id)) fail(`it has the extension ${ext.id} twice`);
    extensions.set(ext.id, ext.value);
    // check: cert-critical-extension tests/pki/verify_test.ts tests/blackboard/negative_test.ts
    if (ext.critical && !KNOWN_EXTENSIONS.has(ext.id)) {
      fail(`unknown critical extension ${ext.id}`);
    }
  }
  const read = <T>(id: string, name: string, decode: (value: Uint8Array) => T | undefined) => {
    const value = extensions.get(id);
    if (value === undefined) return undefined;
    const decoded = decode(value);
    // check: cert-extension-readable tests/pki/outline_test.ts
    if (decoded === undefined) fail(`its ${name} extension cannot be read`);
    return decoded;
  };
  // check: cert-end-entity tests/pki/verify_test.ts tests/blackboard/negative_test.ts
  if (read(OID.basicConstraints, "basic constraints", basicConstraintsCa)) {
    fail("it is a CA certificate, not an end-entity certificate");
  }

  const usages = read(OID.keyUsage, "key usage", keyUsageFlags);
  // check: cert-key-usage-present tests/pki/verify_test.ts
  if (usages === undefined) fail("it has no key usage extension");
  // check: cert-digital-signature tests/pki/verify_test.ts
  if (!(usages! & x509.KeyUsageFlags.digitalSignature)) {
    fail("key usage does not allow digitalSignature");
  }
  // check: cert-key-encipherment tests/pki/verify_test.ts
  if (options.keyEncipherment && !(usages! & x509.KeyUsageFlags.keyEncipherment)) {
    fail("key usage does not allow keyEncipherment");
  }
  const eku = read(OID.extKeyUsage, "extended key usage", extendedKeyUsages);
  const wanted = options.purpose === "clientAuth" ? OID.clientAuth : OID.serverAuth;
  // check: cert-extended-key-usage tests/pki/verify_test.ts
  if (!eku || !eku.includes(wanted)) {
    fail(`extended key usage does not allow ${options.purpose}`);
  }

  const keyProblem = await rsaKeyProblem(outline!.publicKey).catch((err) =>
    `key cannot be read: ${err instanceof Error ? err.message : String(err)}`
  );
  if (keyProblem) fail(`its ${keyProblem}`);

  // check: cert-revoked tests/pki/verify_test.ts
  if (options.crl && options.crl.findRevoked(cert)) fail("it has been revoked");

  if (options.expectedCommonName !== undefined) {
    const cn = commonName(cert);
    // check: cert-expected-cn tests/pki/verify_test.ts
    if (cn !== options.expectedCommonName) {
      fail(`its CN is '${cn ?? ""}', not '${options.expectedCommonName}'`);
    }
  }
  if (options.expectedHost !== undefined) {
    const san = cert.getExtension(x509.SubjectAlternativeNameExtension);
    const names = san?.names.items.map((n) => n.value.toLowerCase()) ?? [];
    // check: service-name-san tests/trudy/cross_service_test.ts tests/pki/verify_test.ts
    if (!names.includes(options.expectedHost.toLowerCase())) {
      fail(`it is not issued for ${options.expectedHost} (SAN: ${names.join(", ") || "none"})`);
    }
  }
}

/** True when two SubjectPublicKeyInfo DER encodings are the same key. */
export function samePublicKey(cert: Certificate, spki: Uint8Array): boolean {
  return sameBytes(outlineOf(cert)?.publicKey ?? new Uint8Array(cert.publicKey.rawData), spki);
}
