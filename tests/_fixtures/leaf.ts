/**
 * Leaf certificates built directly with @peculiar/x509 for the verification tests
 * (tests/pki/verify_test.ts, tests/pki/outline_test.ts): the CA's student profile, and a leaf
 * with whatever extensions, names, dates and keys a test needs, signed by a test root.
 */

import { toBytes } from "../../lib/crypto/mod.ts";
import { type Certificate, OID, randomSerial, RSA_SIGN, x509 } from "../../lib/pki/mod.ts";

/** The student profile's basic constraints, key usage and extended key usage, as the CA writes them. */
export function studentProfile(): x509.Extension[] {
  return [
    new x509.BasicConstraintsExtension(false, undefined, true),
    new x509.KeyUsagesExtension(
      x509.KeyUsageFlags.digitalSignature | x509.KeyUsageFlags.keyEncipherment,
      true,
    ),
    new x509.ExtendedKeyUsageExtension([OID.clientAuth], false),
  ];
}

export interface LeafOptions {
  /** The root that signs it (unless `signingKey`), and names the issuer (unless `issuer`). */
  ca: { cert: Certificate; keys: CryptoKeyPair };
  /** SubjectPublicKeyInfo DER. */
  publicKey: Uint8Array;
  extensions: x509.Extension[];
  subject: string;
  notBefore?: Date;
  notAfter?: Date;
  issuer?: string | x509.Name;
  signingKey?: CryptoKey;
}

/** A leaf valid from a minute ago for a day (unless told otherwise), signed by the root. */
export async function leafCertificate(options: LeafOptions): Promise<Certificate> {
  const now = Date.now();
  return await x509.X509CertificateGenerator.create({
    serialNumber: randomSerial(),
    subject: options.subject,
    issuer: options.issuer ?? options.ca.cert.subjectName,
    notBefore: options.notBefore ?? new Date(now - 60_000),
    notAfter: options.notAfter ?? new Date(now + 86_400_000),
    signingAlgorithm: RSA_SIGN,
    publicKey: new x509.PublicKey(toBytes(options.publicKey)),
    signingKey: options.signingKey ?? options.ca.keys.privateKey,
    extensions: options.extensions,
  });
}
