/**
 * TLS record sequences read from a capture and compared with the expected sequences in
 * `pcap/expected/*.json`.
 *
 * The unit is the TLS record, not the packet: records split across TCP segments and several records
 * share one segment, so tshark reads the capture with TCP reassembly on and this module walks its
 * JSON tree record by record. Each record gets two names:
 *
 * - `wire`: what Wireshark shows without keys (the seed's capture): `Client Hello`, `Change Cipher
 *   Spec`, `Encrypted Handshake Message`, `Application Data`…
 * - `content`: what it shows with the embedded key log: `Finished`, `Encrypted Extensions,
 *   Certificate, Certificate Verify, Finished`… (`null` when the record could not be decrypted).
 *
 * An expectation lists the handshake records in order (direction, wire name and, for encrypted
 * records, the decrypted name) and then the records allowed after the handshake, with counts.
 */

import { EXPECTED_DIR } from "../runtime/mod.ts";

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
}

export interface TlsConnection {
  stream: number;
  /** `127.0.0.1:54321`. */
  client: string;
  /** `127.0.0.1:8443`. */
  server: string;
  records: TlsRecord[];
}

export interface ExpectedRecord {
  from: Side | "either";
  wire: string;
  /** The decrypted name, when it differs from the wire name. */
  decrypted?: string;
  /**
   * Consecutive handshake records with the same group may come in any order: records that the two
   * sides send at the same time cross on the wire (TLS 1.3's client Change Cipher Spec).
   */
  group?: string;
}

export interface ExpectedTail extends ExpectedRecord {
  /** Fewest records of this kind after the handshake (default 0). */
  min?: number;
  /** Most records of this kind (default unlimited). */
  max?: number;
}

export interface Expectation {
  /** Short name, e.g. `tls12`. */
  name: string;
  title: string;
  /** The handshake, record by record, in order. */
  handshake: ExpectedRecord[];
  /** The records allowed after the handshake, in any order, with counts. */
  after: ExpectedTail[];
  /** The seed's own capture, as its Info column shows it, for the report. */
  seed?: string[];
  /** What differs from the seed and why (printed with every comparison). */
  notes?: string[];
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

// ---------------------------------------------------------------------------------------------
// Expectations

/** Parses and checks an expectation file's content. */
export function parseExpectation(text: string, source = "expectation"): Expectation {
  const data = JSON.parse(text) as Json;
  const fail = (why: string): never => {
    throw new SyntaxError(`Invalid ${source}: ${why}`);
  };
  const str = (v: unknown, what: string): string => typeof v === "string" ? v : fail(what);
  const rec = (v: unknown, where: string): ExpectedTail => {
    if (typeof v !== "object" || v === null) fail(`${where} is not an object`);
    const o = v as Json;
    const from = str(o.from, `${where}.from is missing`);
    if (from !== "client" && from !== "server" && from !== "either") {
      fail(`${where}.from must be client, server or either`);
    }
    const out: ExpectedTail = {
      from: from as ExpectedRecord["from"],
      wire: str(o.wire, `${where}.wire is missing`),
    };
    if (o.decrypted !== undefined) out.decrypted = str(o.decrypted, `${where}.decrypted`);
    if (o.group !== undefined) out.group = str(o.group, `${where}.group`);
    for (const k of ["min", "max"] as const) {
      if (o[k] !== undefined) {
        if (typeof o[k] !== "number" || !Number.isInteger(o[k]) || (o[k] as number) < 0) {
          fail(`${where}.${k} must be a non-negative integer`);
        }
        out[k] = o[k] as number;
      }
    }
    return out;
  };
  if (!Array.isArray(data.handshake) || data.handshake.length === 0) {
    fail("handshake must be a non-empty list");
  }
  const list = (v: unknown, what: string): string[] | undefined =>
    v === undefined
      ? undefined
      : Array.isArray(v)
      ? v.map((x, i) => str(x, `${what}[${i}] must be text`))
      : fail(`${what} must be a list`);
  const exp: Expectation = {
    name: str(data.name, "name is missing"),
    title: str(data.title, "title is missing"),
    handshake: (data.handshake as unknown[]).map((r, i) => rec(r, `handshake[${i}]`)),
    after: Array.isArray(data.after)
      ? (data.after as unknown[]).map((r, i) => rec(r, `after[${i}]`))
      : fail("after must be a list"),
  };
  const seed = list(data.seed, "seed");
  if (seed) exp.seed = seed;
  const notes = list(data.notes, "notes");
  if (notes) exp.notes = notes;
  return exp;
}

export { EXPECTED_DIR };

/** Loads `pcap/expected/NAME.json`. */
export async function loadExpectation(name: string): Promise<Expectation> {
  return parseExpectation(
    await Deno.readTextFile(`${EXPECTED_DIR}/${name}.json`),
    `pcap/expected/${name}.json`,
  );
}

// ---------------------------------------------------------------------------------------------
// Comparing

function matches(e: ExpectedRecord, r: TlsRecord): boolean {
  if (e.from !== "either" && e.from !== r.from) return false;
  // A record that stayed encrypted has no content: it matches nothing that names one.
  return e.wire === r.wire && r.content === (e.decrypted ?? e.wire);
}

const ARROW: Record<ExpectedRecord["from"], string> = {
  client: "client → server",
  server: "server → client",
  either: "either way     ",
};

export function describeExpected(e: ExpectedTail): string {
  const what = e.decrypted && e.decrypted !== e.wire ? `${e.wire} [${e.decrypted}]` : e.wire;
  const count = e.min !== undefined || e.max !== undefined
    ? ` (${e.min ?? 0}${e.max === undefined ? "+" : e.max === e.min ? "" : `-${e.max}`})`
    : "";
  return `${ARROW[e.from]}  ${what}${count}`;
}

export function describeRecord(r: TlsRecord): string {
  const what = r.content === null
    ? `${r.wire} [not decrypted]`
    : r.content !== r.wire
    ? `${r.wire} [${r.content}]`
    : r.wire;
  return `${ARROW[r.from]}  ${what}`;
}

export interface Row {
  expected?: string;
  actual?: string;
  ok: boolean;
}

export interface ConnectionCheck {
  connection: TlsConnection;
  expectation: Expectation;
  ok: boolean;
  /** One line per problem. */
  problems: string[];
  /** The two sequences side by side. */
  rows: Row[];
}

/** Longest common subsequence alignment of the expected handshake with the actual records. */
function align(expected: readonly ExpectedRecord[], actual: readonly TlsRecord[]): Array<
  [number | undefined, number | undefined]
> {
  const n = expected.length;
  const m = actual.length;
  const table = Array.from({ length: n + 1 }, () => new Array<number>(m + 1).fill(0));
  for (let i = n - 1; i >= 0; i--) {
    for (let j = m - 1; j >= 0; j--) {
      table[i]![j] = matches(expected[i]!, actual[j]!)
        ? table[i + 1]![j + 1]! + 1
        : Math.max(table[i + 1]![j]!, table[i]![j + 1]!);
    }
  }
  const pairs: Array<[number | undefined, number | undefined]> = [];
  let i = 0;
  let j = 0;
  while (i < n && j < m) {
    if (matches(expected[i]!, actual[j]!)) pairs.push([i++, j++]);
    else if (table[i + 1]![j]! >= table[i]![j + 1]!) pairs.push([i++, undefined]);
    else pairs.push([undefined, j++]);
  }
  while (i < n) pairs.push([i++, undefined]);
  while (j < m) pairs.push([undefined, j++]);
  return pairs;
}

/**
 * Pairs the first records with the handshake in order, where the records of one group may come in
 * any order among themselves: for each record, the index of the expected record it matches, or
 * `null` when the records do not match.
 */
function matchHandshake(
  hs: readonly ExpectedRecord[],
  actual: readonly TlsRecord[],
): number[] | null {
  if (actual.length < hs.length) return null;
  const pairing: number[] = [];
  let i = 0;
  while (i < hs.length) {
    const group = hs[i]!.group;
    let j = i + 1;
    if (group !== undefined) { while (j < hs.length && hs[j]!.group === group) j++; }
    const unused = Array.from({ length: j - i }, (_, k) => i + k);
    for (let k = i; k < j; k++) {
      const at = unused.findIndex((e) => matches(hs[e]!, actual[k]!));
      if (at < 0) return null;
      pairing.push(unused.splice(at, 1)[0]!);
    }
    i = j;
  }
  return pairing;
}

/** Compares one connection with one expectation. */
export function checkConnection(
  connection: TlsConnection,
  expectation: Expectation,
): ConnectionCheck {
  const actual = connection.records;
  const hs = expectation.handshake;
  const problems: string[] = [];
  const rows: Row[] = [];
  const pairing = matchHandshake(hs, actual);
  let tail: TlsRecord[];
  if (pairing) {
    pairing.forEach((e, i) =>
      rows.push({
        expected: describeExpected(hs[e]!),
        actual: describeRecord(actual[i]!),
        ok: true,
      })
    );
    tail = actual.slice(hs.length);
  } else {
    // Align the handshake with the records up to the last one that belongs to it.
    const pairs = align(hs, actual);
    let lastHs = -1;
    pairs.forEach(([e, a]) => {
      if (e !== undefined && a !== undefined) lastHs = Math.max(lastHs, a);
    });
    const cut = Math.max(lastHs + 1, Math.min(hs.length, actual.length));
    const head = align(hs, actual.slice(0, cut));
    for (const [e, a] of head) {
      const ok = e !== undefined && a !== undefined;
      rows.push({
        ...(e !== undefined ? { expected: describeExpected(hs[e]!) } : {}),
        ...(a !== undefined ? { actual: describeRecord(actual[a]!) } : {}),
        ok,
      });
      if (e !== undefined && a === undefined) {
        problems.push(`missing: ${describeExpected(hs[e]!).replace(/\s+/g, " ")}`);
      } else if (e === undefined && a !== undefined) {
        problems.push(
          `unexpected in the handshake (frame ${actual[a]!.frame}): ${
            describeRecord(actual[a]!).replace(/\s+/g, " ")
          }`,
        );
      }
    }
    if (problems.length === 0) problems.push("the handshake records are out of order");
    tail = actual.slice(cut);
  }
  // After the handshake: every record must be allowed, and the counts must fit.
  const counts = new Array<number>(expectation.after.length).fill(0);
  for (const r of tail) {
    const k = expectation.after.findIndex((e) => matches(e, r));
    if (k < 0) {
      problems.push(
        `not allowed after the handshake (frame ${r.frame}): ${
          describeRecord(r).replace(/\s+/g, " ")
        }`,
      );
      rows.push({ actual: describeRecord(r), ok: false });
    } else {
      counts[k]!++;
    }
  }
  expectation.after.forEach((e, k) => {
    const n = counts[k]!;
    const ok = n >= (e.min ?? 0) && n <= (e.max ?? Infinity);
    if (!ok) {
      problems.push(
        `after the handshake: ${n} × ${describeExpected(e).replace(/\s+/g, " ")}`,
      );
    }
    if (n > 0 || !ok) {
      rows.push({
        expected: describeExpected(e),
        actual: n > 0 ? `${n} record${n === 1 ? "" : "s"}` : "(none)",
        ok,
      });
    }
  });
  return { connection, expectation, ok: problems.length === 0, problems, rows };
}

/** The two sequences side by side, with `✗` on each line that differs. */
export function formatRows(rows: readonly Row[], leftTitle: string, rightTitle: string): string {
  const width = Math.max(leftTitle.length, ...rows.map((r) => (r.expected ?? "").length)) + 2;
  const lines = [`    ${leftTitle.padEnd(width)}| ${rightTitle}`];
  lines.push(`    ${"-".repeat(width)}+${"-".repeat(Math.max(rightTitle.length + 1, 20))}`);
  for (const r of rows) {
    lines.push(
      `${r.ok ? "  " : "✗ "}  ${(r.expected ?? "(nothing)").padEnd(width)}| ${
        r.actual ?? "(missing)"
      }`,
    );
  }
  return lines.join("\n");
}

/** A readable report of one connection's check, with the expectation's notes. */
export function formatConnectionCheck(check: ConnectionCheck): string {
  const c = check.connection;
  const head =
    `${check.ok ? "PASS" : "FAIL"} ${check.expectation.title}: TCP stream ${c.stream}, ` +
    `client ${c.client} → server ${c.server}, ${c.records.length} TLS records`;
  const lines = [
    head,
    formatRows(check.rows, `expected (pcap/expected/${check.expectation.name}.json)`, "captured"),
  ];
  for (const p of check.problems) lines.push(`  problem: ${p}`);
  if (check.expectation.seed) {
    lines.push(`  the seed's capture showed: ${check.expectation.seed.join(" | ")}`);
  }
  for (const n of check.expectation.notes ?? []) lines.push(`  note: ${n}`);
  return lines.join("\n");
}

export interface CaptureRequirement {
  expectation: Expectation;
  /** How many connections must match it (default 1). */
  count?: number;
}

export interface CaptureCheck {
  ok: boolean;
  connections: TlsConnection[];
  checks: ConnectionCheck[];
  /** Problems that concern the capture as a whole (counts). */
  problems: string[];
  report: string;
}

/**
 * Checks that every TLS connection of a capture matches one of the required expectations, and that
 * each expectation is matched by exactly its count of connections. A connection that matches none
 * is reported against the expectation it comes closest to.
 */
export function checkConnections(
  connections: TlsConnection[],
  requirements: readonly CaptureRequirement[],
): CaptureCheck {
  const checks: ConnectionCheck[] = [];
  const matched = new Array<number>(requirements.length).fill(0);
  for (const conn of connections) {
    const candidates = requirements.map((r) => checkConnection(conn, r.expectation));
    const k = candidates.findIndex((c) => c.ok);
    if (k >= 0) {
      matched[k]!++;
      checks.push(candidates[k]!);
    } else {
      const closest = candidates.reduce((best, c) =>
        c.problems.length < best.problems.length ? c : best
      );
      checks.push(closest);
    }
  }
  const problems: string[] = [];
  if (connections.length === 0) problems.push("the capture holds no TLS connection");
  requirements.forEach((r, k) => {
    const want = r.count ?? 1;
    if (matched[k] !== want) {
      problems.push(
        `${want} connection${want === 1 ? "" : "s"} should match ${r.expectation.name}, ${
          matched[k]
        } did`,
      );
    }
  });
  const ok = problems.length === 0 && checks.every((c) => c.ok);
  const report = [
    ...checks.map(formatConnectionCheck),
    ...problems.map((p) => `FAIL ${p}`),
  ].join("\n\n");
  return { ok, connections, checks, problems, report };
}

/** Reads a capture and checks it (see `checkConnections`). */
export async function checkCapture(
  file: string,
  requirements: readonly CaptureRequirement[],
  options: ReadOptions = {},
): Promise<CaptureCheck> {
  return checkConnections(await readTlsConnections(file, options), requirements);
}
