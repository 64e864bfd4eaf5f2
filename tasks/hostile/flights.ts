/**
 * The first flights of each lab protocol, framed, for handshake floods (`flood.py --replay`): each
 * exchange makes the server do its expensive part for a client that never finishes.
 */

import { BANK_VERSION, bankProtocol } from "../../lib/bank/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";
import { encodeFrame } from "../../lib/wire/mod.ts";

/** Bob: Hello and 'prove it'; each answered exchange costs Bob one RSA signature. */
export function bankHandshakeFlights(): Uint8Array[] {
  return [
    encodeFrame(bankProtocol.encode("hello", { greeting: "Hello", version: BANK_VERSION })),
    encodeFrame(bankProtocol.encode("proveIt", { text: "prove it", nonce: randomBytes(32) })),
  ];
}
