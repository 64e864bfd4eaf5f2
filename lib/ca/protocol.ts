/**
 * The CUHK enrolment protocol on TCP 9335, one request and one answer per connection:
 *
 *     student → CA   csr          STEP 1: student ID, enrolment code, PKCS#10 CSR (DER)
 *     CA → student   certificate  STEP 2: cert 2 (DER)
 *     anyone → CA    crlRequest   revocation: ask for the current CRL
 *     CA → anyone    crl          the CRL (DER)
 *     CA → peer      error        a refusal, one line
 */

import { defineProtocol } from "../wire/mod.ts";

export const CA_PORT = 9335;
/** CSRs and certificates are a few KiB; nothing legitimate comes near this. */
export const CA_MAX_FRAME = 16 * 1024;
/** How long a peer may take to send its request. */
export const CA_READ_TIMEOUT_MS = 10_000;

export const caProtocol = defineProtocol("CUHK", {
  csr: { code: 0x01, label: "STEP 1 CSR", fields: { sid: "text", code: "text", csr: "bytes" } },
  certificate: { code: 0x02, label: "STEP 2 cert 2", fields: { certificate: "bytes" } },
  crlRequest: { code: 0x03, label: "CRL request", fields: {} },
  crl: { code: 0x04, label: "CRL", fields: { crl: "bytes" } },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});
