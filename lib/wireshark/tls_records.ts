/**
 * TLS records read from a capture, for comparison with the expected sequences
 * (`expectation.ts`, `tls_check.ts`).
 *
 * The unit is the TLS record, not the packet: records split across TCP segments and several records
 * share one segment, so tshark reads the capture with TCP reassembly on and this module walks its
 * JSON tree record by record. Each record gets two names:
 *
 * - `wire`: what Wireshark shows without keys (the seed's capture): `Client Hello`, `Change Cipher
 *   Spec`, `Encrypted Handshake Message`, `Application Data`…
 * - `content`: what it shows with the embedded key log: `Finished`, `Encrypted Extensions,
 *   Certificate, Certificate Verify, Finished`… (`null` when the record could not be decrypted).
 */

export type Side = "client" | "server";

export interface TlsRecord {
  frame: number;
  /** Seconds since the first packet. */
  time: number;
  /** tshark's TCP stream index: one TLS connection. */
  stream: number;
  from: Side;
  /** What Wireshark shows without keys. */
  wire: string;
  /** What it shows once decrypted; `null` when the record stayed encrypted. */
  content: string | null;
  /** How it was seen, for reports (e.g. two packets joined as one write flight). */
  detail?: string;
}

export interface TlsConnection {
  stream: number;
  /** `127.0.0.1:54321`. */
  client: string;
  /** `127.0.0.1:8443`. */
  server: string;
  records: TlsRecord[];
}

// ---------------------------------------------------------------------------------------------
// Names, as Wireshark prints them

const HANDSHAKE_TYPES: Record<number, string> = {
  0: "Hello Request",
  1: "Client Hello",
  2: "Server Hello",
  3: "Hello Verify Request",
  4: "New Session Ticket",
  5: "End Of Early Data",
  8: "Encrypted Extensions",
  11: "Certificate",
  12: "Server Key Exchange",
  13: "Certificate Request",
  14: "Server Hello Done",
  15: "Certificate Verify",
  16: "Client Key Exchange",
  20: "Finished",
  22: "Certificate Status",
  24: "Key Update",
  254: "Message Hash",
};

const ALERT_DESCRIPTIONS: Record<number, string> = {
  0: "Close Notify",
  10: "Unexpected Message",
  20: "Bad Record MAC",
  22: "Record Overflow",
  40: "Handshake Failure",
  42: "Bad Certificate",
  43: "Unsupported Certificate",
  44: "Certificate Revoked",
  45: "Certificate Expired",
  46: "Certificate Unknown",
  47: "Illegal Parameter",
  48: "Unknown CA",
  49: "Access Denied",
  50: "Decode Error",
  51: "Decrypt Error",
  70: "Protocol Version",
  71: "Insufficient Security",
  80: "Internal Error",
  86: "Inappropriate Fallback",
  90: "User Canceled",
  109: "Missing Extension",
  110: "Unsupported Extension",
  112: "Unrecognized Name",
  116: "Certificate Required",
  120: "No Application Protocol",
};

function handshakeName(type: number): string {
  return HANDSHAKE_TYPES[type] ?? `Handshake ${type}`;
}

function alertName(level: number, desc: number): string {
  const l = level === 1 ? "Warning" : level === 2 ? "Fatal" : `Level ${level}`;
  return `Alert (${l}, ${ALERT_DESCRIPTIONS[desc] ?? `Description ${desc}`})`;
}

// ---------------------------------------------------------------------------------------------
// Reading a capture

type Json = Record<string, unknown>;

function asList(v: unknown): Json[] {
  if (Array.isArray(v)) return v.filter((x): x is Json => typeof x === "object" && x !== null);
  return typeof v === "object" && v !== null ? [v as Json] : [];
}

function num(v: unknown): number | undefined {
  if (typeof v === "string" && v !== "") {
    const n = Number(v);
    return Number.isFinite(n) ? n : undefined;
  }
  return undefined;
}

function first(obj: Json, key: string): unknown {
  const v = obj[key];
  return Array.isArray(v) ? v[0] : v;
}

/** The handshake message types in a record, in order. */
function handshakeTypes(record: Json): number[] {
  const types: number[] = [];
  for (const hs of asList(record["tls.handshake"])) {
    const t = num(first(hs, "tls.handshake.type"));
    if (t !== undefined) types.push(t);
  }
  return types;
}

function alertOf(record: Json): string | null {
  const alert = asList(record["tls.alert_message"])[0];
  if (!alert) return null;
  const level = num(first(alert, "tls.alert_message.level"));
  const desc = num(first(alert, "tls.alert_message.desc"));
  return level === undefined || desc === undefined ? null : alertName(level, desc);
}

/** Names one record, given whether its direction already switched to encryption (TLS 1.2). */
function nameRecord(record: Json, afterCcs: boolean): { wire: string; content: string | null } {
  const opaque = record["tls.record.opaque_type"] !== undefined;
  const type = num(first(record, "tls.record.content_type"));
  const hs = handshakeTypes(record).map(handshakeName).join(", ");
  const alert = alertOf(record);
  const encrypted = opaque || afterCcs;
  switch (type) {
    case 20:
      return { wire: "Change Cipher Spec", content: "Change Cipher Spec" };
    case 21:
      return {
        wire: opaque ? "Application Data" : encrypted || alert === null ? "Encrypted Alert" : alert,
        content: alert,
      };
    case 22:
      return {
        wire: opaque
          ? "Application Data"
          : encrypted || hs === ""
          ? "Encrypted Handshake Message"
          : hs,
        content: hs === "" ? null : hs,
      };
    case 23:
      return { wire: "Application Data", content: "Application Data" };
    case 24:
      return { wire: opaque ? "Application Data" : "Heartbeat", content: "Heartbeat" };
    case undefined:
      // A TLS 1.3 record that could not be decrypted: only its opaque type is known.
      return { wire: opaque ? "Application Data" : "Unknown Record", content: null };
    default:
      return { wire: `Content Type ${type}`, content: null };
  }
}

export interface ReadOptions {
  /** Server ports, decoded as TLS whatever their number; they also tell client from server. */
  serverPorts?: readonly number[];
  /** Extra tshark arguments (e.g. `-o tls.keylog_file:FILE`). */
  tsharkArgs?: readonly string[];
}

/** Runs tshark and returns its standard output; throws with its error line on failure. */
export async function tshark(args: readonly string[]): Promise<string> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("tshark", {
      args: [...args],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    throw new Error(
      `Cannot run tshark: ${err instanceof Error ? err.message : err} (run 'deno task setup')`,
    );
  }
  const stderr = new TextDecoder().decode(out.stderr)
    .split("\n")
    .filter((l) => l.trim() !== "" && !/Running as user "root"/.test(l))
    .join("\n");
  if (!out.success) throw new Error(`tshark failed: ${stderr || `status ${out.code}`}`);
  return new TextDecoder().decode(out.stdout);
}

/** The reassembly preferences every reading of a capture uses. */
export const REASSEMBLY_PREFS = [
  "-o",
  "tcp.desegment_tcp_streams:TRUE",
  "-o",
  "tls.desegment_ssl_records:TRUE",
  "-o",
  "tls.desegment_ssl_application_data:TRUE",
];

/** Reads every TLS record of a capture, grouped by TCP connection, in capture order. */
export async function readTlsConnections(
  file: string,
  options: ReadOptions = {},
): Promise<TlsConnection[]> {
  const decodeAs = (options.serverPorts ?? []).flatMap((p) => ["-d", `tcp.port==${p},tls`]);
  const text = await tshark([
    "-r",
    file,
    ...REASSEMBLY_PREFS,
    ...decodeAs,
    ...(options.tsharkArgs ?? []),
    "-Y",
    "tls",
    "-T",
    "json",
    "--no-duplicate-keys",
    "-J",
    "frame ip ipv6 tcp tls",
  ]);
  const packets = text.trim() === "" ? [] : JSON.parse(text) as unknown;
  return connectionsFromJson(packets, options.serverPorts ?? []);
}

/** Builds the connections from tshark's `-T json --no-duplicate-keys` output. */
export function connectionsFromJson(
  packets: unknown,
  serverPorts: readonly number[],
): TlsConnection[] {
  const byStream = new Map<number, TlsConnection>();
  const afterCcs = new Map<string, boolean>();
  for (const packet of asList(packets)) {
    const layers = asList(asList(packet["_source"])[0]?.["layers"])[0];
    if (!layers) continue;
    const frame = asList(layers["frame"])[0] ?? {};
    const ip = asList(layers["ip"])[0] ?? asList(layers["ipv6"])[0] ?? {};
    const tcp = asList(layers["tcp"])[0] ?? {};
    const stream = num(first(tcp, "tcp.stream"));
    const srcPort = num(first(tcp, "tcp.srcport"));
    const dstPort = num(first(tcp, "tcp.dstport"));
    if (stream === undefined || srcPort === undefined || dstPort === undefined) continue;
    const src = String(first(ip, "ip.src") ?? first(ip, "ipv6.src") ?? "?");
    const dst = String(first(ip, "ip.dst") ?? first(ip, "ipv6.dst") ?? "?");
    const srcAddr = `${src.includes(":") ? `[${src}]` : src}:${srcPort}`;
    const dstAddr = `${dst.includes(":") ? `[${dst}]` : dst}:${dstPort}`;
    const records = asList(layers["tls"]).flatMap((tls) => asList(tls["tls.record"]));
    for (const record of records) {
      let conn = byStream.get(stream);
      if (!conn) {
        // The server is the side on a known server port, else the side that did not send the
        // first record (a TLS connection starts with the client's Client Hello).
        const srcIsServer = serverPorts.includes(srcPort) && !serverPorts.includes(dstPort);
        conn = srcIsServer
          ? { stream, client: dstAddr, server: srcAddr, records: [] }
          : { stream, client: srcAddr, server: dstAddr, records: [] };
        byStream.set(stream, conn);
      }
      const from: Side = srcAddr === conn.client ? "client" : "server";
      const key = `${stream}/${from}`;
      const named = nameRecord(record, afterCcs.get(key) ?? false);
      // Everything a side sends after its Change Cipher Spec is encrypted (TLS 1.3 records are
      // also marked by their opaque type).
      if (named.wire === "Change Cipher Spec") afterCcs.set(key, true);
      conn.records.push({
        frame: num(first(frame, "frame.number")) ?? 0,
        time: num(first(frame, "frame.time_relative")) ?? 0,
        stream,
        from,
        ...named,
      });
    }
  }
  return [...byStream.values()].sort((a, b) => a.stream - b.stream);
}
