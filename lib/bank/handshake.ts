/**
 * The bank's handshake, Alice's side and Bob's: runs the mode asked for over one connection, and on
 * a failed step tells the peer the step and the reason before closing.
 *
 * Each mode reads top to bottom in its own file, with both sides:
 *
 *   - `secure.ts`  the default: Bob's certificate, nonces, a signed exchange, ephemeral X25519,
 *                  HKDF keys (`key_schedule.ts`) and AES-GCM records;
 *   - `seed.ts`    `--protocol seed`, seed 001's protocol with its flaws, for teaching attacks.
 *
 * Both walk the same named steps through the state machine of `machine.ts`.
 */

import { BANK_HANDSHAKE_TIMEOUT_MS } from "./protocol.ts";
import { type AliceOptions, type BobOptions, HandshakeError, HandshakeMachine } from "./machine.ts";
import { aliceSeed, bobSeed } from "./seed.ts";
import { aliceSecure, bobSecure } from "./secure.ts";
import type { BankSession } from "./records.ts";
import type { FramedStream } from "../wire/mod.ts";

/**
 * Alice's side: runs the handshake over `stream` and returns the session (after Bob's welcome in
 * secure mode). On failure Bob is told the step and reason, and the error is thrown.
 */
export async function aliceHandshake(
  stream: FramedStream,
  options: AliceOptions,
): Promise<{ session: BankSession; machine: HandshakeMachine }> {
  const machine = new HandshakeMachine(
    stream,
    options.mode,
    "alice",
    options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
  );
  try {
    const session = options.mode === "seed"
      ? await aliceSeed(machine, options)
      : await aliceSecure(machine, options);
    return { session, machine };
  } catch (err) {
    if (err instanceof HandshakeError) await machine.abort(err.message);
    else stream.close();
    throw err;
  }
}

/**
 * Bob's side: runs the handshake and returns the session, whose `customer` is the authenticated
 * certificate subject (secure) or the claimed name (seed). The caller sends the welcome.
 */
export async function bobHandshake(
  stream: FramedStream,
  options: BobOptions,
): Promise<{ session: BankSession; machine: HandshakeMachine }> {
  const machine = new HandshakeMachine(
    stream,
    options.mode,
    "bob",
    options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS,
  );
  try {
    const session = options.mode === "seed"
      ? await bobSeed(machine, options)
      : await bobSecure(machine, options);
    return { session, machine };
  } catch (err) {
    if (err instanceof HandshakeError) await machine.abort(err.message);
    else stream.close();
    throw err;
  }
}
