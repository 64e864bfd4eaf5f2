/**
 * Whether a capture's TLS handshakes waited on the network for nothing: Nagle's algorithm holding a
 * small record until the peer's delayed ACK (40 ms on Linux). The symptom that made the chat do 22
 * TLS 1.2 handshakes a second: the server's Change Cipher Spec left at once, its Finished 40 ms
 * later, right after the client's (delayed) ACK of the Change Cipher Spec.
 *
 * Three rules, on the handshake of each connection (from its first record up to the later of the
 * two Finished messages; connections without both are skipped, e.g. a refused Client Hello):
 *
 * 1. TLS 1.2: a side's Change Cipher Spec and the Finished after it leave together: in one TCP
 *    segment, or in back-to-back segments (nothing from the peer between them, not even an ACK,
 *    and at most `maxGapMs` apart). A rustls server with Nagle's algorithm off (Deno.listenTls
 *    and TCP_NODELAY) writes the two records separately, 20 µs apart; with Nagle on, the Finished
 *    waits for the client's ACK of the Change Cipher Spec.
 * 2. TLS 1.2: within a flight (records of one side with no record of the other side between
 *    them), no record comes more than `maxGapMs` after the one before it. Not a rule for TLS 1.3
 *    (the longest pause is reported): there, records of one side are apart by real work, not only
 *    by the network. The server's Server Hello may leave before it has signed the rest of its
 *    flight (Certificate Verify), and a client's Change Cipher Spec (the dummy for middleboxes)
 *    goes out before it verifies the server's flight and only then writes its Finished:
 *    milliseconds each, more under load.
 * 3. No segment of the handshake leaves right after (within `releaseMs`) an ACK from the peer that
 *    came `delayedAckMs` or more after the data it acknowledges: that is a segment Nagle held.
 *
 * Rule 3 sees such a wait in TLS 1.3 too, whatever work came before it (the server's flight held
 * after its Change Cipher Spec; the client's Finished held while the server's flight arrives).
 */

import {
  type ReadOptions,
  readTlsConnections,
  type Side,
  type TlsConnection,
  type TlsRecord,
  tshark,
} from "./tls_records.ts";

/** One TCP packet, as far as the timing rules need it. */
export interface TcpSegment {
  frame: number;
  /** Seconds since the first packet. */
  time: number;
  stream: number;
  srcPort: number;
  dstPort: number;
  /** Payload bytes. */
  len: number;
  /** Relative sequence number of the first payload byte. */
  seq: number;
  /** Relative acknowledgement number (what the sender has received from its peer). */
  ack: number;
  /** SYN, FIN or RST: not a plain data segment or ACK. */
  control: boolean;
}

export interface TimingLimits {
  /**
   * TLS 1.2: longest pause between two records of one flight, or between a Change Cipher Spec and
   * the Finished in the next segment (default 5 ms).
   */
  maxGapMs: number;
  /** An ACK this late after the data it acknowledges is a delayed ACK (default 20 ms). */
  delayedAckMs: number;
  /** A segment this soon after such an ACK was released by it (default 1 ms). */
  releaseMs: number;
}

export const DEFAULT_TIMING_LIMITS: Readonly<TimingLimits> = {
  maxGapMs: 5,
  delayedAckMs: 20,
  releaseMs: 1,
};

export interface HandshakeTiming {
  connection: TlsConnection;
  /** Whether both Finished messages were seen (else the rules were not applied). */
  completed: boolean;
  /** The handshake's first and last frames. */
  frames: [number, number];
  /** The longest pause within a flight, in ms, and where. */
  longestGap: { ms: number; at: string };
  /** What each rule found, one line each, when it found nothing wrong. */
  findings: string[];
  problems: string[];
}

const OTHER: Record<Side, Side> = { client: "server", server: "client" };

function ms(seconds: number): number {
  return Math.round(seconds * 1e6) / 1e3;
}

function recordName(r: TlsRecord): string {
  return r.content !== null && r.content !== r.wire ? `${r.wire} [${r.content}]` : r.wire;
}

/** Reads every TCP packet of a capture (tshark, relative sequence numbers). */
export async function readTcpSegments(file: string): Promise<TcpSegment[]> {
  const fields = [
    "frame.number",
    "frame.time_relative",
    "tcp.stream",
    "tcp.srcport",
    "tcp.dstport",
    "tcp.len",
    "tcp.seq",
    "tcp.ack",
    "tcp.flags.syn",
    "tcp.flags.fin",
    "tcp.flags.reset",
  ];
  const text = await tshark([
    "-r",
    file,
    "-o",
    "tcp.relative_sequence_numbers:TRUE",
    "-Y",
    "tcp",
    "-T",
    "fields",
    "-E",
    "separator=\t",
    ...fields.flatMap((f) => ["-e", f]),
  ]);
  const flag = (v: string | undefined) => v === "1" || v === "True" || v === "true";
  return text.split("\n").filter((l) => l.trim() !== "").map((line) => {
    const v = line.split("\t");
    const n = (i: number) => Number(v[i] ?? "0") || 0;
    return {
      frame: n(0),
      time: n(1),
      stream: n(2),
      srcPort: n(3),
      dstPort: n(4),
      len: n(5),
      seq: n(6),
      ack: n(7),
      control: flag(v[8]) || flag(v[9]) || flag(v[10]),
    };
  });
}

function portOf(addr: string): number {
  return Number(/:(\d+)$/.exec(addr)?.[1] ?? "0");
}

/** Applies the three rules to one connection's handshake (see the module's comment). */
export function handshakeTiming(
  connection: TlsConnection,
  segments: readonly TcpSegment[],
  limits: TimingLimits = DEFAULT_TIMING_LIMITS,
): HandshakeTiming {
  const records = connection.records;
  const lastFinished = (side: Side) =>
    records.findLastIndex((r) => r.from === side && /\bFinished\b/.test(r.content ?? ""));
  const end = Math.max(lastFinished("client"), lastFinished("server"));
  const completed = lastFinished("client") >= 0 && lastFinished("server") >= 0;
  const hs = records.slice(0, end + 1);
  const result: HandshakeTiming = {
    connection,
    completed,
    frames: [hs[0]?.frame ?? 0, hs.at(-1)?.frame ?? 0],
    longestGap: { ms: 0, at: "" },
    findings: [],
    problems: [],
  };
  if (!completed) return result;
  const clientPort = portOf(connection.client);
  const inStream = segments.filter((s) =>
    s.stream === connection.stream && s.frame <= result.frames[1]
  );
  const sideOf = (s: TcpSegment): Side => s.srcPort === clientPort ? "client" : "server";

  // 1. TLS 1.2: Change Cipher Spec and Finished leave together.
  for (const side of ["client", "server"] as const) {
    const ccs = hs.findIndex((r) => r.from === side && r.wire === "Change Cipher Spec");
    const next = hs[ccs + 1];
    if (
      ccs < 0 || next === undefined || next.from !== side ||
      next.wire !== "Encrypted Handshake Message" || next.content !== "Finished"
    ) continue;
    const c = hs[ccs]!;
    const apart = ms(next.time - c.time);
    const between = inStream.filter((s) =>
      s.frame > c.frame && s.frame < next.frame && sideOf(s) !== side
    );
    const what = `the ${side}'s Change Cipher Spec and Finished`;
    if (c.frame === next.frame) {
      result.findings.push(`${what} in one TCP segment (frame ${c.frame})`);
    } else if (between.length === 0 && apart <= limits.maxGapMs) {
      result.findings.push(
        `${what} back to back (frames ${c.frame} and ${next.frame}, ${apart} ms apart, nothing ` +
          `from the ${OTHER[side]} in between)`,
      );
    } else {
      result.problems.push(
        `${what} did not leave together: frames ${c.frame} and ${next.frame}, ${apart} ms apart` +
          (between.length > 0
            ? `, with the ${OTHER[side]}'s frame${between.length === 1 ? "" : "s"} ${
              between.map((s) => s.frame).join(", ")
            } in between`
            : ""),
      );
    }
  }

  // 2. TLS 1.2: no pause within a flight (Server Hello Done is in the clear in TLS 1.2 only).
  const tls12 = hs.some((r) => r.from === "server" && /\bServer Hello Done\b/.test(r.wire));
  for (let i = 1; i < hs.length; i++) {
    const [a, b] = [hs[i - 1]!, hs[i]!];
    if (a.from !== b.from) continue;
    const gap = ms(b.time - a.time);
    const at = `the ${b.from}'s ${recordName(b)} (frame ${b.frame}) after its ${
      recordName(a)
    } (frame ${a.frame})`;
    if (gap > result.longestGap.ms) result.longestGap = { ms: gap, at };
    if (tls12 && gap > limits.maxGapMs) {
      result.problems.push(
        `${at}: ${gap} ms later, with no record from the ${OTHER[b.from]} in between ` +
          `(more than ${limits.maxGapMs} ms)`,
      );
    }
  }
  result.findings.push(
    (result.longestGap.ms === 0
      ? "no pause within a flight"
      : `longest pause within a flight ${result.longestGap.ms} ms (${result.longestGap.at})`) +
      (tls12 ? "" : " (TLS 1.3: reported, not a rule)"),
  );

  // 3. No segment released by a delayed ACK.
  const first = result.frames[0];
  const lastAck: Record<Side, number> = { client: 0, server: 0 };
  let released = 0;
  for (const [k, s] of inStream.entries()) {
    const from = sideOf(s);
    if (s.control || s.len > 0 || s.ack <= lastAck[from]) {
      if (!s.control && s.ack > lastAck[from]) lastAck[from] = s.ack;
      continue;
    }
    // A pure ACK that acknowledges new data: when did that data arrive?
    const peer = OTHER[from];
    const acked = inStream.slice(0, k).findLast((d) =>
      sideOf(d) === peer && d.len > 0 && d.seq + d.len <= s.ack && d.seq + d.len > lastAck[from]
    );
    lastAck[from] = s.ack;
    if (!acked || ms(s.time - acked.time) < limits.delayedAckMs) continue;
    const out = inStream.slice(k + 1).find((d) => sideOf(d) === peer && d.len > 0);
    if (!out || out.frame < first || ms(out.time - s.time) > limits.releaseMs) continue;
    released++;
    result.problems.push(
      `the ${peer}'s segment in frame ${out.frame} (${out.len} bytes) left ${
        ms(out.time - s.time)
      } ms after the ${from}'s ACK in frame ${s.frame}, which came ${
        ms(s.time - acked.time)
      } ms after the data it acknowledges (frame ${acked.frame}): Nagle's algorithm held it ` +
        `for a delayed ACK`,
    );
  }
  if (released === 0) result.findings.push("no segment held until a delayed ACK");
  return result;
}

export interface TimingCheck {
  ok: boolean;
  handshakes: HandshakeTiming[];
  report: string;
}

function formatTiming(t: HandshakeTiming): string {
  const c = t.connection;
  const where = `TCP stream ${c.stream}, client ${c.client} → server ${c.server}`;
  if (!t.completed) {
    return `skip ${where}: no completed handshake (${c.records.map(recordName).join(", ")})`;
  }
  const lines = [
    `${t.problems.length === 0 ? "PASS" : "FAIL"} ${where}: handshake in frames ${t.frames[0]}–${
      t.frames[1]
    }`,
    ...t.findings.map((f) => `    ${f}`),
    ...t.problems.map((p) => `  problem: ${p}`),
  ];
  return lines.join("\n");
}

/** Checks every TLS handshake of a capture against the three rules; at least one must complete. */
export function checkTimings(
  connections: readonly TlsConnection[],
  segments: readonly TcpSegment[],
  limits: TimingLimits = DEFAULT_TIMING_LIMITS,
): TimingCheck {
  const handshakes = connections.map((c) => handshakeTiming(c, segments, limits));
  const completed = handshakes.filter((h) => h.completed);
  const ok = completed.length > 0 && completed.every((h) => h.problems.length === 0);
  const report = [
    ...handshakes.map(formatTiming),
    ...(completed.length === 0 ? ["FAIL no TLS handshake completed in the capture"] : []),
  ].join("\n");
  return { ok, handshakes, report };
}

/** Reads a capture (its TLS records, decrypted by the embedded key log, and its TCP packets). */
export async function checkHandshakeTiming(
  file: string,
  options: ReadOptions & { limits?: Partial<TimingLimits> } = {},
): Promise<TimingCheck> {
  const [connections, segments] = await Promise.all([
    readTlsConnections(file, options),
    readTcpSegments(file),
  ]);
  return checkTimings(connections, segments, { ...DEFAULT_TIMING_LIMITS, ...options.limits });
}
