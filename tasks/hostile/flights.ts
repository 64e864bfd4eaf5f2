/**
 * The first flights of each lab protocol, framed, for handshake floods (`flood.py --replay`): each
 * exchange makes the server do its expensive part for a client that never finishes.
 */

import { BANK_VERSION, bankProtocol } from "../../lib/bank/mod.ts";
import { newKeyShare, randomBytes } from "../../lib/crypto/mod.ts";
import { caProtocol } from "../../lib/ca/mod.ts";
import { blackboardProtocol, NONCE_BYTES, requestLine } from "../../lib/blackboard/mod.ts";
import { encodeFrame } from "../../lib/wire/mod.ts";

/** Bob: Hello and 'prove it'; each answered exchange costs Bob one RSA signature. */
export function bankHandshakeFlights(): Uint8Array[] {
  return [
    encodeFrame(bankProtocol.encode("hello", { greeting: "Hello", version: BANK_VERSION })),
    encodeFrame(bankProtocol.encode("proveIt", { text: "prove it", nonce: randomBytes(32) })),
  ];
}

/**
 * The CA: an enrolment request with a valid CSR and a wrong code binding; the CA parses and checks
 * the CSR, then refuses.
 */
export function caEnrolmentFlights(sid: string, csr: Uint8Array): Uint8Array[] {
  return [encodeFrame(caProtocol.encode("csr", { sid, binding: randomBytes(32), csr }))];
}

/**
 * Blackboard: a step-3 request with a real cert 2; Blackboard verifies the certificate, checks
 * revocation and signs its step 4 for a client that never answers.
 */
export async function blackboardRequestFlights(
  sid: string,
  certificate: Uint8Array,
): Promise<Uint8Array[]> {
  return [
    encodeFrame(blackboardProtocol.encode("request", {
      request: requestLine(sid),
      certificate,
      nonce: randomBytes(NONCE_BYTES),
      share: (await newKeyShare()).publicRaw,
      records: "aes-gcm",
    })),
  ];
}
