/**
 * Reading DER where the lab needs only its outline (no ASN.1 object model): one element's header,
 * and a signed object split into what was signed and the signature's algorithm. Used by the
 * student certificate's encoder (lib/pki/issue.ts) and by OpenSSL's signature checks
 * (lib/pki/rsa.ts). Every read stays within the bytes given; anything else is `undefined`.
 */

import { fromHex } from "../crypto/mod.ts";

const DER_SEQUENCE = 0x30;
const DER_INTEGER = 0x02;
/** A TBSCertificate's `[0] EXPLICIT` version. */
const DER_VERSION = 0xa0;

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
