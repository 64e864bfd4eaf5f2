/**
 * Issuing leaf certificates (`issueCertificate`). The student profile's certificate is encoded
 * directly as DER: the same bytes, field for field,
 * that @peculiar/x509's generator writes for `issueCertificate`'s student profile (a test compares
 * the two on many inputs), without its JavaScript ASN.1 object model, which cost about as much as
 * the RSA signature itself. What depends only on the issuer (its name, its key identifier, the
 * signature algorithm) is encoded once per issuer.
 *
 *     Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue BIT STRING }
 *     TBSCertificate ::= SEQUENCE { [0] version v3, serialNumber, signature, issuer, validity,
 *       subject, subjectPublicKeyInfo, [3] extensions: basicConstraints (critical, cA false),
 *       keyUsage (critical, digitalSignature keyEncipherment), extKeyUsage clientAuth,
 *       subjectKeyIdentifier, authorityKeyIdentifier }
 */

import { createHash } from "node:crypto";
import { concatBytes, fromHex, toBytes } from "../crypto/mod.ts";
import { type Certificate, DAY_MS, OID, randomSerial, x509 } from "./pki.ts";
import { RSA_SIGN, signRsa } from "./rsa.ts";
import { derElement, SHA256_WITH_RSA } from "./der.ts";

const SEQUENCE = 0x30;
const SET = 0x31;
const INTEGER = 0x02;
const BIT_STRING = 0x03;
const OCTET_STRING = 0x04;
const PRINTABLE_STRING = 0x13;
const UTC_TIME = 0x17;
const GENERALIZED_TIME = 0x18;

/** One DER element: tag, definite length (short or long form), contents. */
function tlv(tag: number, ...contents: Uint8Array[]): Uint8Array {
  const body = concatBytes(...contents);
  const n = body.length;
  let head: number[];
  if (n < 0x80) head = [tag, n];
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v % 256);
    head = [tag, 0x80 | bytes.length, ...bytes];
  }
  return concatBytes(Uint8Array.from(head), body);
}

/** A positive INTEGER from hex, in its minimal two's-complement form. */
function integer(hex: string): Uint8Array {
  // RFC 5280 §4.1.2.2: a serial is a positive integer (and an empty one is no DER at all).
  if (!/^[0-9a-fA-F]+$/.test(hex) || /^0*$/.test(hex)) {
    throw new RangeError(`A serial number must be positive hex, got '${hex}'`);
  }
  let bytes = fromHex(hex.length % 2 ? `0${hex}` : hex);
  let start = 0;
  while (start < bytes.length - 1 && bytes[start] === 0 && bytes[start + 1]! < 0x80) start++;
  bytes = bytes.subarray(start);
  if (bytes[0]! >= 0x80) bytes = concatBytes(Uint8Array.of(0), bytes);
  return tlv(INTEGER, bytes);
}

/** RFC 5280 §4.1.2.5: UTCTime through 2049, GeneralizedTime from 2050; whole seconds, UTC. */
function time(date: Date): Uint8Array {
  const iso = date.toISOString(); // YYYY-MM-DDTHH:MM:SS.sssZ
  const digits = iso.slice(0, 19).replace(/[-T:]/g, "");
  const year = date.getUTCFullYear();
  const utc = year >= 1950 && year < 2050;
  return tlv(utc ? UTC_TIME : GENERALIZED_TIME, toBytes(`${utc ? digits.slice(2) : digits}Z`));
}

const EXT_BASIC_CONSTRAINTS = fromHex("300c0603551d130101ff04023000");
const EXT_KEY_USAGE = fromHex("300e0603551d0f0101ff0404030205a0");
const EXT_CLIENT_AUTH = fromHex("30130603551d25040c300a06082b06010505070302");
const OID_SUBJECT_KEY_ID = fromHex("0603551d0e");
const OID_AUTHORITY_KEY_ID = fromHex("0603551d23");
const OID_COMMON_NAME = fromHex("0603550403");

/** RFC 5280 §4.2.1.2 method 1: SHA-1 of the subjectPublicKey BIT STRING's value. */
function keyIdentifier(spki: Uint8Array): Uint8Array {
  return new Uint8Array(createHash("sha1").update(subjectPublicKeyBits(spki)).digest());
}

/** Reads one DER header at `at`: its tag, where its contents start, and their length. */
function header(der: Uint8Array, at: number): { tag: number; start: number; length: number } {
  const element = derElement(der, at);
  if (!element) throw new RangeError("Truncated DER");
  return { tag: element.tag, start: element.body, length: element.end - element.body };
}

/** The subjectPublicKey of a SubjectPublicKeyInfo, without the BIT STRING's unused-bits byte. */
function subjectPublicKeyBits(spki: Uint8Array): Uint8Array {
  const outer = header(spki, 0);
  const algorithm = header(spki, outer.start);
  const bits = header(spki, algorithm.start + algorithm.length);
  if (outer.tag !== SEQUENCE || algorithm.tag !== SEQUENCE || bits.tag !== BIT_STRING) {
    throw new RangeError("Not a SubjectPublicKeyInfo");
  }
  return spki.subarray(bits.start + 1, bits.start + bits.length);
}

/** What depends only on the issuer, encoded once per issuer certificate. */
interface IssuerParts {
  name: Uint8Array;
  authorityKeyId: Uint8Array;
}

const issuerParts = new WeakMap<Certificate, IssuerParts>();

function partsOf(issuer: Certificate): IssuerParts {
  let parts = issuerParts.get(issuer);
  if (!parts) {
    const id = keyIdentifier(new Uint8Array(issuer.publicKey.rawData));
    parts = {
      name: new Uint8Array(issuer.subjectName.toArrayBuffer()),
      authorityKeyId: tlv(
        SEQUENCE,
        OID_AUTHORITY_KEY_ID,
        tlv(OCTET_STRING, tlv(SEQUENCE, tlv(0x80, id))),
      ),
    };
    issuerParts.set(issuer, parts);
  }
  return parts;
}

interface StudentTbs {
  serialNumber: string;
  sid: string;
  notBefore: Date;
  notAfter: Date;
  /** DER SubjectPublicKeyInfo of the student's key. */
  publicKey: Uint8Array;
  issuer: Certificate;
}

/** The student profile's TBSCertificate. */
function studentTbs(o: StudentTbs): Uint8Array {
  const { name, authorityKeyId } = partsOf(o.issuer);
  const subject = tlv(
    SEQUENCE,
    tlv(SET, tlv(SEQUENCE, OID_COMMON_NAME, tlv(PRINTABLE_STRING, toBytes(o.sid)))),
  );
  const subjectKeyId = tlv(
    SEQUENCE,
    OID_SUBJECT_KEY_ID,
    tlv(OCTET_STRING, tlv(OCTET_STRING, keyIdentifier(o.publicKey))),
  );
  return tlv(
    SEQUENCE,
    fromHex("a003020102"), // [0] EXPLICIT INTEGER 2 (v3)
    integer(o.serialNumber),
    SHA256_WITH_RSA,
    name,
    tlv(SEQUENCE, time(o.notBefore), time(o.notAfter)),
    subject,
    o.publicKey,
    tlv(
      0xa3,
      tlv(
        SEQUENCE,
        EXT_BASIC_CONSTRAINTS,
        EXT_KEY_USAGE,
        EXT_CLIENT_AUTH,
        subjectKeyId,
        authorityKeyId,
      ),
    ),
  );
}

/** The whole certificate: the TBS, the algorithm, and the signature over the TBS. */
function certificateDer(tbs: Uint8Array, signature: Uint8Array): Uint8Array {
  return tlv(SEQUENCE, tbs, SHA256_WITH_RSA, tlv(BIT_STRING, Uint8Array.of(0), signature));
}

/** Whether `sid` can be written as this profile writes it (digits: a PrintableString). */
function fitsStudentProfile(sid: string): boolean {
  return /^[0-9]{1,64}$/.test(sid);
}

export type Profile =
  | { kind: "student"; sid: string }
  | { kind: "server"; dnsNames: string[]; ipAddresses: string[]; commonName: string };

export interface IssueOptions {
  /** DER SubjectPublicKeyInfo of the subject's key. */
  publicKey: Uint8Array;
  profile: Profile;
  issuer: Certificate;
  issuerKey: CryptoKey;
  validityDays?: number;
  now?: Date;
  serialNumber?: string;
}

/**
 * Issues a leaf certificate. The profile alone decides the extensions: nothing a CSR asks for is
 * copied. Validity is bounded and never outlives the issuer.
 */
export async function issueCertificate(options: IssueOptions): Promise<Certificate> {
  const now = options.now ?? new Date();
  const notBefore = new Date(now.getTime() - 60_000);
  let notAfter = new Date(now.getTime() + (options.validityDays ?? 365) * DAY_MS);
  if (notAfter > options.issuer.notAfter) notAfter = options.issuer.notAfter;
  const p = options.profile;
  if (p.kind === "student" && fitsStudentProfile(p.sid)) {
    // The same bytes as the generator below would write (tests/pki/issue_test.ts).
    const tbs = studentTbs({
      serialNumber: options.serialNumber ?? randomSerial(),
      sid: p.sid,
      notBefore,
      notAfter,
      publicKey: toBytes(options.publicKey),
      issuer: options.issuer,
    });
    const signature = await signRsa(options.issuerKey, tbs);
    return new x509.X509Certificate(toBytes(certificateDer(tbs, signature)));
  }
  const publicKey = new x509.PublicKey(toBytes(options.publicKey));
  const extensions: x509.Extension[] = [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension(
      [p.kind === "student" ? OID.clientAuth : OID.serverAuth],
      false,
    ),
    await x509.SubjectKeyIdentifierExtension.create(publicKey),
    await x509.AuthorityKeyIdentifierExtension.create(options.issuer.publicKey),
  ];
  if (p.kind === "server") {
    extensions.push(
      new x509.SubjectAlternativeNameExtension([
        ...p.dnsNames.map((value) => ({ type: "dns" as const, value })),
        ...p.ipAddresses.map((value) => ({ type: "ip" as const, value })),
      ]),
    );
  }
  const subject = p.kind === "student" ? `CN=${p.sid}` : `CN=${p.commonName}`;
  return await x509.X509CertificateGenerator.create({
    serialNumber: options.serialNumber ?? randomSerial(),
    subject,
    issuer: options.issuer.subjectName,
    notBefore,
    notAfter,
    signingAlgorithm: RSA_SIGN,
    publicKey,
    signingKey: options.issuerKey,
    extensions,
  });
}
