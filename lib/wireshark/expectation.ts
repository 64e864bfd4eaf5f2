/**
 * The expected TLS sequences in `pcap/expected/*.json`.
 *
 * An expectation lists the handshake records in order (direction, wire name and, for encrypted
 * records, the decrypted name) and then the records allowed after the handshake, with counts.
 * The `*-packets.json` files use the same format one packet at a time (`tls_packets.ts`): each
 * entry is what Wireshark's Info column shows for one TCP segment of the raw twin (no keys).
 */

import { EXPECTED_DIR } from "../runtime/mod.ts";
import type { Side } from "./tls_records.ts";

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
  /**
   * Per packet only: this line may also arrive as back-to-back packets of one side that split it
   * between records (nothing from the peer in between, not even an ACK, and each at most
   * `DEFAULT_TIMING_LIMITS.maxGapMs` after the one before). For one write flight that the TLS
   * stack hands to the kernel record by record (see pcap/expected/tls12-packets.json's notes).
   */
  flight?: boolean;
}

/** Another handshake that is just as right, and when it happens. */
export interface AlternativeHandshake {
  when: string;
  handshake: ExpectedRecord[];
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
  /** The handshake, record by record (or packet by packet), in order. */
  handshake: ExpectedRecord[];
  /** Other handshakes that are just as right (timing decides which one a capture shows). */
  alternatives?: AlternativeHandshake[];
  /** The records allowed after the handshake, in any order, with counts. */
  after: ExpectedTail[];
  /** The seed's own capture, as its Info column shows it, for the report. */
  seed?: string[];
  /** What differs from the seed and why (printed with every comparison). */
  notes?: string[];
}

type Json = Record<string, unknown>;

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
    if (o.flight !== undefined) {
      if (typeof o.flight !== "boolean") fail(`${where}.flight must be true or false`);
      out.flight = o.flight as boolean;
    }
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
  const handshake = (v: unknown, where: string): ExpectedRecord[] =>
    Array.isArray(v) && v.length > 0
      ? v.map((r, i) => {
        const { min: _min, max: _max, ...one } = rec(r, `${where}[${i}]`);
        return one;
      })
      : fail(`${where} must be a non-empty list`);
  const list = (v: unknown, what: string): string[] | undefined =>
    v === undefined
      ? undefined
      : Array.isArray(v)
      ? v.map((x, i) => str(x, `${what}[${i}] must be text`))
      : fail(`${what} must be a list`);
  const exp: Expectation = {
    name: str(data.name, "name is missing"),
    title: str(data.title, "title is missing"),
    handshake: handshake(data.handshake, "handshake"),
    after: Array.isArray(data.after)
      ? (data.after as unknown[]).map((r, i) => rec(r, `after[${i}]`))
      : fail("after must be a list"),
  };
  if (data.alternatives !== undefined) {
    if (!Array.isArray(data.alternatives)) fail("alternatives must be a list");
    exp.alternatives = (data.alternatives as unknown[]).map((a, i) => {
      const where = `alternatives[${i}]`;
      if (typeof a !== "object" || a === null) fail(`${where} is not an object`);
      const o = a as Json;
      return {
        when: str(o.when, `${where}.when is missing`),
        handshake: handshake(o.handshake, `${where}.handshake`),
      };
    });
  }
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
