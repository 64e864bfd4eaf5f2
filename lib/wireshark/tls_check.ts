/**
 * TLS record sequences read from a capture (`tls_records.ts`) compared with the expected
 * sequences in `pcap/expected/*.json` (`expectation.ts`).
 */

import type { Expectation, ExpectedRecord, ExpectedTail } from "./expectation.ts";
import {
  type ReadOptions,
  readTlsConnections,
  type TlsConnection,
  type TlsRecord,
} from "./tls_records.ts";

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
  return `${ARROW[r.from]}  ${what}${r.detail ? ` (${r.detail})` : ""}`;
}

export interface Row {
  expected?: string;
  actual?: string;
  ok: boolean;
}

export interface ConnectionCheck {
  connection: TlsConnection;
  expectation: Expectation;
  /** Which of the expectation's alternative handshakes matched (`when`), if not the first. */
  alternative?: string;
  /** What the connection's entries are: `TLS records`, or `packets` (`tls_packets.ts`). */
  unit?: string;
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

/**
 * Compares one connection with one expectation: its handshake, else the first of its alternatives
 * that matches; when none does, the report compares with the first.
 */
export function checkConnection(
  connection: TlsConnection,
  expectation: Expectation,
  noun = "record",
): ConnectionCheck {
  const first = checkHandshake(connection, expectation, expectation.handshake, noun);
  if (first.ok) return first;
  for (const alt of expectation.alternatives ?? []) {
    const check = checkHandshake(connection, expectation, alt.handshake, noun);
    if (check.ok) return { ...check, alternative: alt.when };
  }
  return first;
}

function checkHandshake(
  connection: TlsConnection,
  expectation: Expectation,
  hs: readonly ExpectedRecord[],
  noun: string,
): ConnectionCheck {
  const actual = connection.records;
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
        actual: n > 0 ? `${n} ${noun}${n === 1 ? "" : "s"}` : "(none)",
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
    `client ${c.client} → server ${c.server}, ${c.records.length} ${check.unit ?? "TLS records"}`;
  const lines = [
    head,
    formatRows(check.rows, `expected (pcap/expected/${check.expectation.name}.json)`, "captured"),
  ];
  if (check.alternative) lines.push(`  matched the alternative: ${check.alternative}`);
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

export interface CheckOptions {
  /**
   * Turns a connection into what is compared with one expectation (per packet: joins the
   * back-to-back packets of a `flight` line, see `tls_packets.ts`).
   */
  prepare?: (connection: TlsConnection, expectation: Expectation) => TlsConnection;
  /** What a connection's entries are called in the report (default `TLS records`). */
  unit?: string;
  /** One of them (default `record`). */
  noun?: string;
}

/**
 * Checks that every TLS connection of a capture matches one of the required expectations, and that
 * each expectation is matched by exactly its count of connections. A connection that matches none
 * is reported against the expectation it comes closest to.
 */
export function checkConnections(
  connections: TlsConnection[],
  requirements: readonly CaptureRequirement[],
  options: CheckOptions = {},
): CaptureCheck {
  const checks: ConnectionCheck[] = [];
  const matched = new Array<number>(requirements.length).fill(0);
  const prepare = options.prepare ?? ((c: TlsConnection) => c);
  for (const conn of connections) {
    const candidates = requirements.map((r) => {
      const check = checkConnection(prepare(conn, r.expectation), r.expectation, options.noun);
      return options.unit ? { ...check, unit: options.unit } : check;
    });
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
