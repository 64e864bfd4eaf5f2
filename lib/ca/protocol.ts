/**
 * The CUHK enrolment protocol on TCP 9335, one request and one answer per connection:
 *
 *     student → CA   csr          STEP 1: student ID, code binding, PKCS#10 CSR (DER)
 *     CA → student   certificate  STEP 2: cert 2 (DER)
 *     anyone → CA    crlRequest   revocation: ask for the current CRL
 *     CA → anyone    crl          the CRL (DER)
 *     CA → peer      error        a refusal, one line
 *
 * The enrolment code never crosses the wire (as in ACME's external account binding): the student
 * sends `binding` = HMAC-SHA256(SHA-256(code), label ‖ ID ‖ CSR), so the code is proven for this
 * ID and this CSR (its public key included). Someone on the path who reads the request can neither
 * learn the code nor move the binding to a CSR of their own. In seed mode (open enrolment) the
 * binding is empty and nothing is checked.
 */

import { concatBytes, hmacSha256, sha256, toBytes } from "../crypto/mod.ts";
import { defineProtocol } from "../wire/mod.ts";

export const CA_PORT = 9335;
/** CSRs and certificates are a few KiB; nothing legitimate comes near this. */
export const CA_MAX_FRAME = 16 * 1024;
/** How long a peer may take to send its request. */
export const CA_READ_TIMEOUT_MS = 10_000;

export const caProtocol = defineProtocol("CUHK", {
  csr: { code: 0x01, label: "STEP 1 CSR", fields: { sid: "text", binding: "bytes", csr: "bytes" } },
  certificate: { code: 0x02, label: "STEP 2 cert 2", fields: { certificate: "bytes" } },
  crlRequest: { code: 0x03, label: "CRL request", fields: {} },
  crl: { code: 0x04, label: "CRL", fields: { crl: "bytes" } },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

const BINDING_LABEL = toBytes("CUHK enrolment code binding v1\0");

/** The MAC key a code stands for: SHA-256 of the code's text (what the CA's ledger keeps). */
export async function codeKey(code: string): Promise<Uint8Array> {
  return await sha256(code);
}

/**
 * The binding of an enrolment request: HMAC-SHA256 under the code's key over a label, the ID's
 * length (4 bytes) and text, and the DER CSR. `key` is `codeKey(code)`.
 */
export async function enrolmentBinding(
  key: Uint8Array,
  sid: string,
  csr: Uint8Array,
): Promise<Uint8Array> {
  const id = toBytes(sid);
  const length = new Uint8Array(4);
  new DataView(length.buffer).setUint32(0, id.length);
  return await hmacSha256(key, concatBytes(BINDING_LABEL, length, id, csr));
}
