/**
 * TLS packet by packet, as Wireshark lists a capture made without keys: the raw twin of a TLS
 * capture (`SCENARIO.raw.pcapng`, no key log embedded), one line per TCP segment, named by its
 * Info column: `Client Hello`; `Server Hello, Certificate, Server Key Exchange, Server Hello Done`;
 * `Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message`… That is the list seed
 * 004 shows. `tls_records.ts` compares the decrypted capture record by record; this module compares
 * the raw twin packet by packet, against `pcap/expected/*-packets.json` (same format, one entry per
 * packet), so a packet split in two, removed, or moved fails.
 *
 * Which packets: every TCP segment of a TLS connection that carries payload, except retransmitted
 * ones (`RETRANSMITTED`: their bytes came before, and Wireshark's reassembly skips them). A segment
 * that holds only the first part of a record is a line of its own: `[TCP segment of a reassembled
 * PDU]`, as Wireshark shows it. Wireshark 4.2 and later add the server name to the Client Hello
 * (`Client Hello (SNI=chat)`); that suffix is dropped, so every version gives the same names.
 *
 * One allowance, declared per line in the expected file (`"flight": true`) and never applied
 * elsewhere: a line may arrive as packets of one side, split between records, back to back (no
 * packet from the peer in between, not even an ACK, and each at most `maxGapMs` after the one
 * before). Deno's TLS server (rustls inside `Deno.listenTls`, through rustls-tokio-stream) hands a
 * flight to the kernel one record per `sendto()`, and with TCP_NODELAY each leaves as its own
 * segment: the TLS 1.2 server's Change Cipher Spec and Finished, 10 to 300 µs apart. The report
 * names the packets of such a line (`2 packets back to back: frames 10 and 11, …`).
 * `joinFlights: false` compares strictly, packet by packet.
 */

import type { ExpectedRecord } from "./expectation.ts";
import { RETRANSMITTED } from "./ladder.ts";
import { type CaptureCheck, type CaptureRequirement, checkConnections } from "./tls_check.ts";
import {
  REASSEMBLY_PREFS,
  type Side,
  type TlsConnection,
  type TlsRecord,
  tshark,
} from "./tls_records.ts";
import { DEFAULT_TIMING_LIMITS, readTcpSegments, type TcpSegment } from "./tls_timing.ts";

/** What Wireshark shows for a segment that holds only part of a record. */
export const PARTIAL_SEGMENT = "[TCP segment of a reassembled PDU]";

/**
 * A TLS connection packet by packet: each entry of `records` is one TCP segment, its `wire` (and
 * `content`, the same: nothing is decrypted) the Info column.
 */
export type PacketConnection = TlsConnection;

export interface PacketReadOptions {
  /** Server ports, decoded as TLS whatever their number; they also tell client from server. */
  serverPorts?: readonly number[];
}

/** The Info column of a segment, normalised (see the module's comment). */
export function packetName(protocol: string, info: string): string {
  if (protocol === "TCP") {
    return info.includes(PARTIAL_SEGMENT) ? PARTIAL_SEGMENT : "[TCP payload, not TLS]";
  }
  return info.replace(/ \(SNI=[^)]*\)/g, "").trim();
}

function address(ip: string, port: string): string {
  return `${ip.includes(":") ? `[${ip}]` : ip}:${port}`;
}

/** Reads a capture's TLS connections packet by packet (meant for a raw twin: no keys). */
export async function readTlsPackets(
  file: string,
  options: PacketReadOptions = {},
): Promise<PacketConnection[]> {
  const serverPorts = options.serverPorts ?? [];
  const fields = [
    "frame.number",
    "frame.time_relative",
    "tcp.stream",
    "tcp.srcport",
    "tcp.dstport",
    "ip.src",
    "ip.dst",
    "ipv6.src",
    "ipv6.dst",
    "_ws.col.Protocol",
    "_ws.col.Info",
  ];
  const text = await tshark([
    "-r",
    file,
    ...REASSEMBLY_PREFS,
    ...serverPorts.flatMap((p) => ["-d", `tcp.port==${p},tls`]),
    "-Y",
    `tcp.len > 0 && !(${RETRANSMITTED})`,
    "-T",
    "fields",
    "-E",
    "separator=\t",
    ...fields.flatMap((f) => ["-e", f]),
  ]);
  const lines = text.split("\n").filter((l) => l.trim() !== "").map((l) => l.split("\t"));
  // Only connections that carry TLS: those whose first packet Wireshark dissects as TLS.
  const byStream = new Map<number, PacketConnection>();
  const skipped = new Set<number>();
  for (const v of lines) {
    const [frame, time, stream, srcPort, dstPort, ip4s, ip4d, ip6s, ip6d, protocol, info] = v;
    const s = Number(stream);
    if (skipped.has(s)) continue;
    const src = address(ip4s || ip6s || "?", srcPort ?? "0");
    const dst = address(ip4d || ip6d || "?", dstPort ?? "0");
    let conn = byStream.get(s);
    if (!conn) {
      if (!/^(TLS|SSL)/.test(protocol ?? "")) {
        skipped.add(s);
        continue;
      }
      const srcIsServer = serverPorts.includes(Number(srcPort)) &&
        !serverPorts.includes(Number(dstPort));
      conn = srcIsServer
        ? { stream: s, client: dst, server: src, records: [] }
        : { stream: s, client: src, server: dst, records: [] };
      byStream.set(s, conn);
    }
    const from: Side = src === conn.client ? "client" : "server";
    const name = packetName(protocol ?? "", info ?? "");
    conn.records.push({
      frame: Number(frame),
      time: Number(time),
      stream: s,
      from,
      wire: name,
      content: name,
    });
  }
  return [...byStream.values()].sort((a, b) => a.stream - b.stream);
}

function ms(seconds: number): number {
  return Math.round(seconds * 1e6) / 1e3;
}

/**
 * Joins, for each `flight` line of `lines`, the first run of back-to-back packets of its side
 * whose names, joined with `, `, are that line (see the module's comment). Everything else is left
 * as it is. `segments` are every TCP packet of the capture (ACKs included).
 */
export function joinFlights(
  connection: PacketConnection,
  lines: readonly ExpectedRecord[],
  segments: readonly TcpSegment[],
  maxGapMs = DEFAULT_TIMING_LIMITS.maxGapMs,
): PacketConnection {
  let packets = connection.records;
  const inStream = segments.filter((s) => s.stream === connection.stream);
  const clientPort = Number(/:(\d+)$/.exec(connection.client)?.[1] ?? "0");
  const sideOf = (s: TcpSegment): Side => s.srcPort === clientPort ? "client" : "server";
  for (const line of lines) {
    if (!line.flight) continue;
    const found = findFlight(packets, line, (a, b) => {
      const side = a.from;
      const between = inStream.filter((s) =>
        s.frame > a.frame && s.frame < b.frame && sideOf(s) !== side
      );
      return between.length === 0 && ms(b.time - a.time) <= maxGapMs;
    });
    if (!found) continue;
    const [i, j] = found;
    const run = packets.slice(i, j + 1);
    const name = run.map((p) => p.wire).join(", ");
    const first = run[0]!;
    const last = run.at(-1)!;
    const other = first.from === "client" ? "server" : "client";
    const frames = run.map((p) => p.frame);
    const joined: TlsRecord = {
      ...first,
      wire: name,
      content: name,
      detail: `${run.length} packets back to back: frames ${frames.slice(0, -1).join(", ")} and ${
        frames.at(-1)
      }, ${ms(last.time - first.time)} ms apart, nothing from the ${other} in between`,
    };
    packets = [...packets.slice(0, i), joined, ...packets.slice(j + 1)];
  }
  return { ...connection, records: packets };
}

/** The first run `[i, j]` (j > i) of packets that make up `line`, each pair allowed by `ok`. */
function findFlight(
  packets: readonly TlsRecord[],
  line: ExpectedRecord,
  ok: (a: TlsRecord, b: TlsRecord) => boolean,
): [number, number] | undefined {
  const parts = line.wire.split(", ");
  for (let i = 0; i < packets.length; i++) {
    let used = 0;
    for (let j = i; j < packets.length; j++) {
      const p = packets[j]!;
      if (line.from !== "either" && p.from !== line.from) break;
      if (j > i && (p.from !== packets[i]!.from || !ok(packets[j - 1]!, p))) break;
      const names = p.wire.split(", ");
      if (names.some((n, k) => parts[used + k] !== n)) break;
      used += names.length;
      if (used === parts.length) {
        if (j > i) return [i, j];
        break;
      }
    }
  }
  return undefined;
}

export interface PacketCheckOptions extends PacketReadOptions {
  /** Join the back-to-back packets of `flight` lines (default true); false: strictly per packet. */
  joinFlights?: boolean;
  maxGapMs?: number;
}

/** Checks connections read packet by packet against `*-packets.json` expectations. */
export function checkPacketConnections(
  connections: PacketConnection[],
  requirements: readonly CaptureRequirement[],
  segments: readonly TcpSegment[],
  options: Omit<PacketCheckOptions, "serverPorts"> = {},
): CaptureCheck {
  const join = options.joinFlights ?? true;
  return checkConnections(connections, requirements, {
    unit: "packets carrying TLS",
    noun: "packet",
    prepare: (conn, expectation) =>
      join
        ? joinFlights(
          conn,
          [
            ...expectation.handshake,
            ...(expectation.alternatives ?? []).flatMap((a) => a.handshake),
          ],
          segments,
          options.maxGapMs,
        )
        : conn,
  });
}

/** Reads a raw twin and checks it packet by packet (see `checkPacketConnections`). */
export async function checkPackets(
  file: string,
  requirements: readonly CaptureRequirement[],
  options: PacketCheckOptions = {},
): Promise<CaptureCheck> {
  const [connections, segments] = await Promise.all([
    readTlsPackets(file, options),
    readTcpSegments(file),
  ]);
  return checkPacketConnections(connections, requirements, segments, options);
}
