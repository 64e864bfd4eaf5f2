/**
 * Reading DER where the lab needs only its outline (no ASN.1 object model): one element's header,
 * a signed object split into what was signed and the signature's algorithm, and a certificate's
 * names, key and extensions. Used by the student certificate's encoder (lib/pki/issue.ts), by
 * OpenSSL's signature checks (lib/pki/rsa.ts) and by the certificate checks (lib/pki/pki.ts).
 * Every read stays within the bytes given; anything else is `undefined`.
 */

import { fromHex } from "../crypto/mod.ts";

const DER_SEQUENCE = 0x30;
const DER_INTEGER = 0x02;
const DER_BOOLEAN = 0x01;
const DER_BIT_STRING = 0x03;
const DER_OCTET_STRING = 0x04;
const DER_OID = 0x06;
/** A TBSCertificate's `[0] EXPLICIT` version. */
const DER_VERSION = 0xa0;
/** A TBSCertificate's `[1]` and `[2] IMPLICIT` unique identifiers, and its `[3] EXPLICIT` extensions. */
const DER_ISSUER_UID = 0x81;
const DER_SUBJECT_UID = 0x82;
const DER_EXTENSIONS = 0xa3;

/** sha256WithRSAEncryption (1.2.840.113549.1.1.11) with NULL parameters, as the lab writes it. */
export const SHA256_WITH_RSA = fromHex("300d06092a864886f70d01010b0500");
/** The same algorithm with its parameters left out (RFC 4055 allows both). */
export const SHA256_WITH_RSA_NO_PARAMS = fromHex("300b06092a864886f70d01010b");

/** A DER element: its tag, where it starts, where its contents start, and where it ends. */
export interface DerElement {
  tag: number;
  start: number;
  body: number;
  end: number;
}

/**
 * The DER element at `at`: a one-byte tag and a definite length (short form, or long form of one
 * to three bytes), ending within `der`; undefined otherwise.
 */
export function derElement(der: Uint8Array, at: number): DerElement | undefined {
  if (at < 0 || at + 2 > der.length) return undefined;
  const tag = der[at]!;
  let length = der[at + 1]!;
  let body = at + 2;
  if (length & 0x80) {
    const n = length & 0x7f;
    if (n === 0 || n > 3 || body + n > der.length) return undefined;
    length = 0;
    for (let i = 0; i < n; i++) length = length * 256 + der[body + i]!;
    body += n;
  }
  const end = body + length;
  return end <= der.length ? { tag, start: at, body, end } : undefined;
}

/** What an object signed by a key is: what its to-be-signed part holds differs. */
export type SignedKind = "certificate" | "crl" | "csr";

/** A signed object's parts, as views of its DER. */
export interface SignedParts {
  /** What was signed: the first element, exactly as received. */
  tbs: Uint8Array;
  /** The signature's algorithm identifier, after it. */
  algorithm: Uint8Array;
  /** In a certificate or a CRL, the algorithm identifier inside what was signed. */
  inner?: Uint8Array;
}

/**
 * A certificate's, CRL's or CSR's DER (`SEQUENCE { tbs, algorithm, signature }`) split into its
 * parts; undefined if it does not have that outline (the caller then leaves the check to the
 * X.509 library). The algorithm identifier inside a TBSCertificate follows the optional `[0]`
 * version and the serial number; inside a TBSCertList, the optional version.
 */
export function signedParts(der: Uint8Array, kind: SignedKind): SignedParts | undefined {
  const outer = derElement(der, 0);
  if (!outer || outer.tag !== DER_SEQUENCE || outer.end !== der.length) return undefined;
  const tbs = derElement(der, outer.body);
  const algorithm = tbs && derElement(der, tbs.end);
  if (!tbs || tbs.tag !== DER_SEQUENCE || !algorithm || algorithm.tag !== DER_SEQUENCE) {
    return undefined;
  }
  const parts = {
    tbs: der.subarray(tbs.start, tbs.end),
    algorithm: der.subarray(algorithm.start, algorithm.end),
  };
  if (kind === "csr") return parts;
  let field = derElement(der, tbs.body);
  if (kind === "certificate") {
    if (field?.tag === DER_VERSION) field = derElement(der, field.end);
    if (field?.tag !== DER_INTEGER) return undefined;
    field = derElement(der, field.end);
  } else if (field?.tag === DER_INTEGER) {
    field = derElement(der, field.end);
  }
  if (field?.tag !== DER_SEQUENCE || field.end > tbs.end) return undefined;
  return { ...parts, inner: der.subarray(field.start, field.end) };
}

/** The elements inside a constructed element, each ending within it; undefined otherwise. */
function children(der: Uint8Array, parent: DerElement): DerElement[] | undefined {
  const found: DerElement[] = [];
  for (let at = parent.body; at < parent.end;) {
    const child = derElement(der, at);
    if (!child || child.end > parent.end) return undefined;
    found.push(child);
    at = child.end;
  }
  return found;
}

/** One element that is all of `der`, with the tag `tag`; undefined otherwise. */
function whole(der: Uint8Array, tag: number): DerElement | undefined {
  const element = derElement(der, 0);
  return element?.tag === tag && element.end === der.length ? element : undefined;
}

/**
 * An OBJECT IDENTIFIER's contents in dotted form ("2.5.29.19"); undefined when empty, not minimal
 * (a 0x80 leading an arc), cut short, or with an arc beyond 2^53.
 */
export function oidText(contents: Uint8Array): string | undefined {
  const arcs: number[] = [];
  let value = 0;
  let fresh = true;
  for (const byte of contents) {
    if (fresh && byte === 0x80) return undefined;
    value = value * 128 + (byte & 0x7f);
    if (value > Number.MAX_SAFE_INTEGER) return undefined;
    fresh = (byte & 0x80) === 0;
    if (fresh) {
      if (arcs.length === 0) {
        arcs.push(value < 80 ? Math.floor(value / 40) : 2, value < 80 ? value % 40 : value - 80);
      } else arcs.push(value);
      value = 0;
    }
  }
  return arcs.length > 0 && fresh ? arcs.join(".") : undefined;
}

/** One extension of a certificate: its identifier, whether it is critical, its value's DER. */
export interface ExtensionOutline {
  id: string;
  critical: boolean;
  /** The contents of `extnValue` (an OCTET STRING): the extension's own DER. */
  value: Uint8Array;
}

/** What the certificate checks read of a certificate, as views of its DER. */
export interface CertificateOutline {
  /** The issuer's Name, exactly as encoded. */
  issuer: Uint8Array;
  subject: Uint8Array;
  /** The SubjectPublicKeyInfo. */
  publicKey: Uint8Array;
  extensions: ExtensionOutline[];
}

/**
 * A certificate's names, key and extensions, read from its DER without an ASN.1 object model:
 *
 *     Certificate ::= SEQUENCE { tbsCertificate, signatureAlgorithm, signatureValue }
 *     TBSCertificate ::= SEQUENCE { [0] version OPTIONAL, serialNumber, signature, issuer,
 *       validity, subject, subjectPublicKeyInfo, [1] issuerUniqueID OPTIONAL,
 *       [2] subjectUniqueID OPTIONAL, [3] extensions OPTIONAL }
 *     Extension ::= SEQUENCE { extnID OBJECT IDENTIFIER, critical BOOLEAN DEFAULT FALSE,
 *       extnValue OCTET STRING }
 *
 * Undefined when the DER has another outline: nothing is guessed. A BOOLEAN that is not zero
 * counts as true (BER's reading), so an extension marked critical in any way is critical here.
 */
export function certificateOutline(der: Uint8Array): CertificateOutline | undefined {
  const outer = whole(der, DER_SEQUENCE);
  const tbs = outer && derElement(der, outer.body);
  if (!tbs || tbs.tag !== DER_SEQUENCE || tbs.end > outer!.end) return undefined;
  const fields = children(der, tbs);
  if (!fields) return undefined;
  let i = fields[0]?.tag === DER_VERSION ? 1 : 0;
  const expected = [
    DER_INTEGER,
    DER_SEQUENCE,
    DER_SEQUENCE,
    DER_SEQUENCE,
    DER_SEQUENCE,
    DER_SEQUENCE,
  ];
  if (fields.length < i + expected.length) return undefined;
  for (const tag of expected) if (fields[i++]!.tag !== tag) return undefined;
  const [issuer, , subject, publicKey] = fields.slice(i - 4, i);
  const view = (e: DerElement) => der.subarray(e.start, e.end);
  const outline: CertificateOutline = {
    issuer: view(issuer!),
    subject: view(subject!),
    publicKey: view(publicKey!),
    extensions: [],
  };
  if (fields[i]?.tag === DER_ISSUER_UID) i++;
  if (fields[i]?.tag === DER_SUBJECT_UID) i++;
  if (fields[i]?.tag === DER_EXTENSIONS) {
    const list = children(der, fields[i++]!);
    const sequence = list?.length === 1 && list[0]!.tag === DER_SEQUENCE ? list[0] : undefined;
    const items = sequence && children(der, sequence);
    if (!items || items.length === 0) return undefined;
    for (const item of items) {
      const parts = item.tag === DER_SEQUENCE ? children(der, item) : undefined;
      if (!parts || parts.length < 2 || parts.length > 3 || parts[0]!.tag !== DER_OID) {
        return undefined;
      }
      const flag = parts.length === 3 ? parts[1]! : undefined;
      const value = parts[parts.length - 1]!;
      if (flag && (flag.tag !== DER_BOOLEAN || flag.end - flag.body !== 1)) return undefined;
      if (value.tag !== DER_OCTET_STRING) return undefined;
      const id = oidText(der.subarray(parts[0]!.body, parts[0]!.end));
      if (id === undefined) return undefined;
      outline.extensions.push({
        id,
        critical: flag !== undefined && der[flag.body] !== 0,
        value: der.subarray(value.body, value.end),
      });
    }
  }
  return i === fields.length ? outline : undefined;
}

/**
 * Basic constraints (`SEQUENCE { cA BOOLEAN DEFAULT FALSE, pathLenConstraint INTEGER OPTIONAL }`):
 * whether cA is set; undefined when the value is not that.
 */
export function basicConstraintsCa(value: Uint8Array): boolean | undefined {
  const sequence = whole(value, DER_SEQUENCE);
  const parts = sequence && children(value, sequence);
  if (!parts || parts.length > 2) return undefined;
  let ca = false;
  let next = 0;
  if (parts[0]?.tag === DER_BOOLEAN) {
    if (parts[0].end - parts[0].body !== 1) return undefined;
    ca = value[parts[0].body] !== 0;
    next = 1;
  }
  if (parts.length > next && (parts.length !== next + 1 || parts[next]!.tag !== DER_INTEGER)) {
    return undefined;
  }
  return ca;
}

/**
 * Key usage (a BIT STRING) as flags: bit n of the string (digitalSignature is 0,
 * keyEncipherment 2, …) is `1 << n`, the numbering of @peculiar/x509's `KeyUsageFlags`; bits past
 * decipherOnly (8) are not read. Undefined when the value is not a BIT STRING, or when a bit it
 * declares unused is set (DER pads with zeros; such a bit must not grant a usage, nor be dropped
 * silently).
 */
export function keyUsageFlags(value: Uint8Array): number | undefined {
  const bits = whole(value, DER_BIT_STRING);
  if (!bits || bits.end === bits.body) return undefined;
  const unused = value[bits.body]!;
  const bytes = bits.end - bits.body - 1;
  if (unused > 7 || (bytes === 0 && unused !== 0)) return undefined;
  // check: key-usage-padding tests/pki/outline_test.ts
  if (bytes > 0 && (value[bits.end - 1]! & ((1 << unused) - 1)) !== 0) return undefined;
  let flags = 0;
  for (let n = 0; n < Math.min(bytes * 8 - unused, 9); n++) {
    if (value[bits.body + 1 + (n >> 3)]! & (0x80 >> (n & 7))) flags |= 1 << n;
  }
  return flags;
}

/** Extended key usage (`SEQUENCE OF OBJECT IDENTIFIER`) in dotted form; undefined otherwise. */
export function extendedKeyUsages(value: Uint8Array): string[] | undefined {
  const sequence = whole(value, DER_SEQUENCE);
  const parts = sequence && children(value, sequence);
  if (!parts) return undefined;
  const ids: string[] = [];
  for (const part of parts) {
    const id = part.tag === DER_OID ? oidText(value.subarray(part.body, part.end)) : undefined;
    if (id === undefined) return undefined;
    ids.push(id);
  }
  return ids;
}
