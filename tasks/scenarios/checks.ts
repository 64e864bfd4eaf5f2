/**
 * What the scenarios assert: their own checks (an attack's verdicts, the victims' outcomes), and on
 * the finished capture the TLS record sequences (pcap/expected), the TLS packets of its raw twin,
 * the lab messages pcap/lab.lua names, and the ladder's lanes and red notes.
 */

import {
  type CaptureMessage,
  checkCapture,
  checkHandshakeTiming,
  checkPackets,
  DEFAULT_TIMING_LIMITS,
  describeMark,
  labCoverage,
  type Ladder,
  type LadderMark,
  loadExpectation,
  readLabMessages,
  streamsAnsweredInPlace,
} from "../../lib/wireshark/mod.ts";
import type { ProcessResult } from "../../lib/runtime/mod.ts";
import type { VerdictReason } from "../../lib/trudy/mod.ts";
import type { Check, Context, ScenarioSpec } from "./harness.ts";

/** An attack's half: against seed mode, then against the default. */
export type Half = "seed" | "default";

export function check(ctx: Context, what: string, ok: boolean, report?: string): void {
  ctx.checks.push({ what, ok, ...(report !== undefined ? { report } : {}) });
}

/**
 * Asserts Trudy's verdict: `ATTACK SUCCEEDED` (exit 0) against seed mode, `ATTACK FAILED: <why>`
 * (exit 3) against the default, with the expected reason code on the `[reason: …]` line after it;
 * the verdict line goes into the notes.
 */
export function checkVerdict(
  ctx: Context,
  half: Half,
  trudy: ProcessResult,
  expected: { reason: VerdictReason; says: string },
): void {
  const lines = trudy.stdout.split("\n");
  const at = lines.findIndex((l) => l.startsWith("ATTACK "));
  const line = at >= 0 ? lines[at]! : `(no verdict line, exit ${trudy.code})`;
  const reason = at >= 0 ? /^\[reason: ([a-z0-9-]+)\]$/.exec(lines[at + 1] ?? "")?.[1] : undefined;
  ctx.notes.push(`${half}: ${line} [${reason ?? "no reason"}]`);
  const status = half === "seed" ? 0 : 3;
  const outcome = half === "seed" ? "ATTACK SUCCEEDED: " : "ATTACK FAILED: ";
  check(
    ctx,
    `${half}: Trudy's verdict ${expected.says} [reason: ${expected.reason}] (exit ${status})`,
    trudy.code === status && line.startsWith(outcome) && reason === expected.reason,
    `exit ${trudy.code}: ${line} [reason: ${reason ?? "none"}]`,
  );
}

/** The ladder shows `path`'s lanes in order, with messages both ways between each neighbour. */
export function checkPath(path: readonly string[], ladder: Ladder): Check {
  const lanes = path.map((a) => ladder.actors.indexOf(a));
  const ordered = lanes.every((l, i) => l >= 0 && (i === 0 || l > lanes[i - 1]!));
  const between = (from: string, to: string) =>
    ladder.arrows.filter((a) => a.from === from && a.to === to).length;
  const missing: string[] = [];
  for (let i = 1; i < path.length; i++) {
    const [a, b] = [path[i - 1]!, path[i]!];
    if (between(a, b) === 0) missing.push(`no message ${a} → ${b}`);
    if (between(b, a) === 0) missing.push(`no message ${b} → ${a}`);
  }
  return {
    what: `the ladder shows ${path.join(" ⇄ ")}${
      path.length > 2 ? `, ${path[1]} in the middle lane` : ""
    }`,
    ok: ordered && missing.length === 0,
    report: [`lanes: ${ladder.actors.join(", ")}`, ...missing].join("\n"),
  };
}

/** Every red note (what Trudy changed) found its arrow on the ladder. */
export function checkMarks(marks: readonly LadderMark[], missed: readonly LadderMark[]): Check {
  return {
    what:
      `the ladder marks what Trudy changed: ${marks.length - missed.length} of ${marks.length} ` +
      "red notes on their arrows",
    ok: missed.length === 0,
    report: missed.map((m) => `no arrow ${describeMark(m)} for "${m.note}"`).join("\n"),
  };
}

export async function checkScenario(
  spec: ScenarioSpec<string>,
  ctx: Context<string>,
  file: string,
  raw?: string,
): Promise<Check[]> {
  const checks: Check[] = [];
  if (spec.tls) {
    const { serverPorts, expect, packets, timing } = spec.tls(ctx.ports, ctx);
    const load = (list: typeof expect) =>
      Promise.all(
        list.map(async (e) => ({ expectation: await loadExpectation(e.name), count: e.count })),
      );
    const counts = (list: typeof expect) => list.map((e) => `${e.name} ×${e.count}`).join(", ");
    const res = await checkCapture(file, await load(expect), { serverPorts });
    checks.push({
      what: `TLS records match ${counts(expect)}`,
      ok: res.ok,
      report: res.report,
    });
    if (raw === undefined) {
      checks.push({ what: "TLS packets of the raw twin: no raw twin was written", ok: false });
    } else {
      const per = await checkPackets(raw, await load(packets), { serverPorts });
      checks.push({
        what: `TLS packets of the raw twin (no keys) match ${counts(packets)}`,
        ok: per.ok,
        report: per.report,
      });
    }
    if (timing) {
      const t = await checkHandshakeTiming(file, { serverPorts });
      const { maxGapMs } = DEFAULT_TIMING_LIMITS;
      const done = t.handshakes.filter((h) => h.completed).length;
      checks.push({
        what: `TLS handshakes never wait for a delayed ACK (${done} checked): no segment held ` +
          `until one; TLS 1.2 Change Cipher Spec and Finished together, no pause over ` +
          `${maxGapMs} ms within a flight`,
        ok: t.ok,
        report: t.report,
      });
    }
  }
  if (spec.labels) {
    const messages = await readLabMessages(file);
    const seen = new Set(messages.map((m) => m.label));
    const missing = spec.labels.filter((l) => !seen.has(l));
    const unknown = messages.filter((m) => /unknown message type|empty frame/.test(m.label));
    // Every payload byte of every connection must sit inside a frame the dissector named.
    const unnamed = [...(await labCoverage(file))].filter(([, c]) => c.named !== c.wire);
    // On the netlab her ports never cross the wire (nft hands her the connections in place) and
    // her relay dials the real server's port: her connections are those she answered in place
    // (the victims' legs, to her relay) and those from her own addresses (her relay's legs).
    const trudyAddresses = ctx.place.trudyAddresses;
    if (spec.trudyPorts && trudyAddresses.length > 0) {
      const answered = await streamsAnsweredInPlace(file);
      const own = (m: CaptureMessage) =>
        trudyAddresses.includes(m.src ?? "") || trudyAddresses.includes(m.dst ?? "");
      const hers = messages.filter((m) => own(m) || answered.has(m.stream));
      const streams = new Set(hers.map((m) => m.stream));
      const ownStreams = new Set(hers.filter(own).map((m) => m.stream));
      checks.push({
        what: `pcap/lab.lua names the lab messages on Trudy's connections: ${hers.length} ` +
          `messages on ${streams.size} connection${streams.size === 1 ? "" : "s"} (${
            streams.size - ownStreams.size
          } answered in place, ${ownStreams.size} from her addresses ${trudyAddresses.join(", ")})`,
        ok: hers.length > 0,
        report: hers.map((m) =>
          `frame ${m.frame}: ${m.src}:${m.srcPort} → ${m.dst}:${m.dstPort} ${m.label}`
        ).join("\n"),
      });
    } else if (spec.trudyPorts) {
      const trudy = spec.trudyPorts(ctx.ports);
      const onTrudy = messages.filter((m) =>
        trudy.includes(m.srcPort) || trudy.includes(m.dstPort)
      );
      const streams = new Set(onTrudy.map((m) => m.stream));
      checks.push({
        what: `pcap/lab.lua recognises Trudy's free port${trudy.length === 1 ? "" : "s"} ${
          trudy.join(", ")
        } (heuristic): ${onTrudy.length} messages named on ${streams.size} connection${
          streams.size === 1 ? "" : "s"
        }`,
        ok: trudy.every((p) => onTrudy.some((m) => m.srcPort === p || m.dstPort === p)),
        report: onTrudy.map((m) => `frame ${m.frame}: ${m.srcPort} → ${m.dstPort} ${m.label}`)
          .join("\n"),
      });
    }
    checks.push({
      what:
        `pcap/lab.lua names all ${messages.length} lab messages (every byte), every step present`,
      ok: missing.length === 0 && unknown.length === 0 && unnamed.length === 0 &&
        messages.length > 0,
      report: [
        ...missing.map((l) => `missing: ${l}`),
        ...unknown.map((m) => `frame ${m.frame}: ${m.label}`),
        ...unnamed.map(([s, c]) => `TCP stream ${s}: ${c.named} of ${c.wire} payload bytes named`),
      ].join("\n") || messages.map((m) => `frame ${m.frame}: ${m.label}`).join("\n"),
    });
  }
  return checks;
}
