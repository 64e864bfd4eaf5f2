/** lib/pki: the public face of this folder (re-exports only). */

export * from "./pki.ts";
export * from "./rsa.ts";
export * from "./revocation.ts";
export { BoundedCache, forgetVerifications } from "./cache.ts";
export * from "./issue.ts";
export {
  basicConstraintsCa,
  type CertificateOutline,
  certificateOutline,
  derElement,
  extendedKeyUsages,
  type ExtensionOutline,
  keyUsageFlags,
  oidText,
  type SignedKind,
  signedParts,
} from "./der.ts";
