/**
 * bank-replay: Trudy records Bob's `Hi, I'm Bob` and his proof in one session, then plays Bob to
 * Alice in a later session with exactly those frames.
 *
 * Seed mode: the proof is Bob's signature over the fixed sentence "Alice, This Is Bob", the same in
 * every session, so Alice accepts the replay and sends her secret to Trudy.
 *
 * Secure mode: Bob's signature covers the whole exchange, Alice's fresh nonce included. The
 * recorded proof covers the nonce Trudy sent when she recorded it, not Alice's: Alice refuses it at
 * STEP 4 and tells Trudy why.
 */

import { type AttackServer, attackServer, type Verdict, VerdictQueue } from "./attack.ts";
import {
  BANK_HANDSHAKE_TIMEOUT_MS,
  BANK_MAX_FRAME,
  BANK_VERSION,
  type BankMessage,
  type BankMode,
  bankProtocol,
  SEED_TEXT,
} from "../bank/mod.ts";
import { errorMessage, type HostPort, type StepLog } from "../runtime/mod.ts";
import { randomBytes } from "../crypto/mod.ts";
import { FramedStream, FrameError, receiveExpected } from "../wire/mod.ts";
import { serve } from "../net/mod.ts";

/** Bob's frames as recorded, byte for byte. */
export interface RecordedProof {
  mode: BankMode;
  /** `Hi, I'm Bob` with Bob's key (seed) or certificate (secure). */
  hiBob: Uint8Array;
  /** Bob's proof. */
  proof: Uint8Array;
}

export interface RecordOptions {
  bank: HostPort;
  log: StepLog;
  /** The protocol Bob speaks (default: try seed, then secure). */
  mode?: BankMode;
  timeoutMs?: number;
}

/**
 * Trudy as a client of Bob: says Hello, asks him to prove it, keeps his `Hi, I'm Bob` and proof,
 * and hangs up before step 5.
 */
export async function recordBobProof(options: RecordOptions): Promise<RecordedProof> {
  const modes: BankMode[] = options.mode ? [options.mode] : ["seed", "secure"];
  let lastError: unknown;
  for (const mode of modes) {
    try {
      return await recordOnce(options, mode);
    } catch (err) {
      lastError = err;
      if (!(err instanceof BobRefused) || modes.length === 1) throw err;
      options.log.info(`Bob does not speak the ${mode} protocol (${err.message}): trying again`);
    }
  }
  throw lastError;
}

class BobRefused extends Error {
  override name = "BobRefused";
}

async function recordOnce(options: RecordOptions, mode: BankMode): Promise<RecordedProof> {
  const { log } = options;
  const timeoutMs = options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS;
  const conn = await Deno.connect({ hostname: options.bank.hostname, port: options.bank.port });
  const stream = new FramedStream(conn, { maxFrame: BANK_MAX_FRAME, readTimeoutMs: timeoutMs });
  const expect = async <N extends "seedHiBob" | "seedProof" | "hiBob" | "proof">(
    type: N,
  ): Promise<{ frame: Uint8Array; msg: BankMessage<N> }> => {
    const { msg, bytes } = await receiveExpected(stream, bankProtocol, [type], {
      onClosed: () => new FrameError(`Bob closed the connection before ${type}`, "closed"),
      onRefused: (reason) => new BobRefused(reason),
      onUnexpected: (got) => new FrameError(`Expected ${type} from Bob, got ${got}`, "malformed"),
    });
    return { frame: bytes, msg };
  };
  const where = `${options.bank.hostname}:${options.bank.port}`;
  try {
    if (mode === "seed") {
      await stream.writeFrame(
        bankProtocol.encode("seedHello", { greeting: SEED_TEXT.hello, customer: "trudy" }),
      );
      log.step(1, `recording: Trudy says Hello to Bob at ${where} (seed protocol)`);
      const hi = await expect("seedHiBob");
      log.step(2, `recording: kept Bob's 'Hi, I'm Bob' with his raw key`);
      await stream.writeFrame(bankProtocol.encode("seedProveIt", { text: SEED_TEXT.proveIt }));
      const proof = await expect("seedProof");
      log.step(
        4,
        `recording: kept Bob's proof, his signature over '${proof.msg.sentence}'; hung up before step 5`,
      );
      return { mode, hiBob: hi.frame, proof: proof.frame };
    }
    await stream.writeFrame(
      bankProtocol.encode("hello", { greeting: SEED_TEXT.hello, version: BANK_VERSION }),
    );
    log.step(1, `recording: Trudy says Hello to Bob at ${where} (${BANK_VERSION})`);
    const hi = await expect("hiBob");
    log.step(2, "recording: kept Bob's 'Hi, I'm Bob' with his certificate");
    await stream.writeFrame(
      bankProtocol.encode("proveIt", { text: SEED_TEXT.proveIt, nonce: randomBytes(32) }),
    );
    log.step(3, "recording: sent prove it with a nonce of Trudy's own");
    const proof = await expect("proof");
    log.step(
      4,
      "recording: kept Bob's proof (his signature over this exchange, Trudy's nonce in it); hung up before step 5",
    );
    return { mode, hiBob: hi.frame, proof: proof.frame };
  } finally {
    stream.close();
  }
}

/** One impersonation: the verdict and every frame Alice sent to Trudy. */
export interface ReplayVerdict extends Verdict {
  fromAlice: Uint8Array[];
}

export interface FakeBobOptions {
  recorded: RecordedProof;
  log: StepLog;
  /** Port for Alice to connect to (0 picks one). */
  port?: number;
  hostname?: string;
  timeoutMs?: number;
  graceMs?: number;
  signal?: AbortSignal;
}

/** Trudy's fake Bob: answers each Alice with the recorded frames; one verdict per connection. */
export function startFakeBob(options: FakeBobOptions): AttackServer<ReplayVerdict> {
  const { recorded } = options;
  const queue = new VerdictQueue<ReplayVerdict>();
  const timeoutMs = options.timeoutMs ?? BANK_HANDSHAKE_TIMEOUT_MS;
  const listener = Deno.listen({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? 0,
  });
  const server = serve({
    listener,
    log: options.log,
    graceMs: options.graceMs ?? 0,
    ...(options.signal ? { signal: options.signal } : {}),
    handler: async (conn, { log, remote }) => {
      const stream = new FramedStream(conn, { maxFrame: BANK_MAX_FRAME, readTimeoutMs: timeoutMs });
      const fromAlice: Uint8Array[] = [];
      let verdict: Verdict;
      try {
        verdict = await impersonate(stream, recorded, log, remote, fromAlice);
      } catch (err) {
        verdict = {
          succeeded: false,
          reason: "session-broke-off",
          detail: `Alice's session with the fake Bob broke off: ${errorMessage(err)}`,
        };
      } finally {
        stream.close();
      }
      queue.push({ ...verdict, fromAlice });
    },
  });
  return attackServer(server, queue);
}

async function impersonate(
  stream: FramedStream,
  recorded: RecordedProof,
  log: StepLog,
  remote: string,
  fromAlice: Uint8Array[],
): Promise<Verdict> {
  const next = async (what: string) => {
    const frame = await stream.readFrame();
    if (frame === null) throw new FrameError(`Alice hung up before ${what}`, "closed");
    fromAlice.push(frame);
    return bankProtocol.decode(frame);
  };
  const refusal = (step: number, msg: { type: string; reason?: string }): Verdict | undefined =>
    msg.type === "error"
      ? {
        succeeded: false,
        reason: "replay-refused",
        detail: `Alice refused the replayed frames at STEP ${
          /^STEP (\d)/.exec(msg.reason ?? "")?.[1] ?? step
        } and told Trudy why: ${msg.reason}`,
      }
      : undefined;

  const hello = await next("Hello");
  const aliceMode: BankMode | undefined = hello.type === "seedHello"
    ? "seed"
    : hello.type === "hello"
    ? "secure"
    : undefined;
  log.step(1, `Hello from ${remote} (${aliceMode ?? hello.type}): Trudy answers as Bob`);
  if (aliceMode !== recorded.mode) {
    return {
      succeeded: false,
      reason: "protocol-mismatch",
      detail:
        `Alice speaks the ${aliceMode} protocol but Trudy recorded Bob speaking the ${recorded.mode} protocol`,
    };
  }
  await stream.writeFrame(recorded.hiBob);
  log.step(2, "Hi, I'm Bob: replayed Bob's recorded frame (his key or certificate)");

  const proveIt = await next("prove it");
  const refused3 = refusal(2, proveIt);
  if (refused3) return refused3;
  log.step(
    3,
    proveIt.type === "proveIt"
      ? "prove it: Alice sent a fresh nonce (the recorded proof does not cover it)"
      : "prove it: no nonce (any earlier proof answers it)",
  );
  await stream.writeFrame(recorded.proof);
  log.step(4, "Bob's proof: replayed Bob's recorded proof");

  const after = await next("Alice's secret");
  const refused5 = refusal(4, after);
  if (refused5) {
    log.step(4, `Alice refused: ${(after as { reason: string }).reason}`);
    return refused5;
  }
  if (after.type === "seedSecret") {
    log.step(
      5,
      `Alice's secret: received (${after.secret.length} bytes, encrypted to Bob's key): Alice believes Trudy is Bob`,
    );
    return {
      succeeded: true,
      reason: "replay-accepted",
      detail:
        "Alice accepted Bob's proof replayed from an earlier session (seed: the same signature over a fixed sentence every time) and sent her secret to Trudy, believing she is Bob",
    };
  }
  log.step(5, `Alice sent ${after.type}`);
  return {
    succeeded: true,
    reason: "replay-accepted",
    detail: `Alice accepted the replayed proof and went on to step 5 (${after.type})`,
  };
}
