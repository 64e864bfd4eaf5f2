/**
 * A capture drawn as a message-sequence (ladder) diagram: one lane per actor, one arrow per message,
 * labelled by its step. Messages come from the dissected capture: the lab's framed protocols
 * through pcap/lab.lua (one arrow per frame: `STEP 1 CSR`, `STEP 4 Bob's proof`…) and TLS record by
 * record (`Client Hello`, `Server Hello, Certificate, …`, decrypted names where the key log allows).
 *
 * The SVG stands alone; the HTML page embeds it and lists the same messages as a table.
 */

import { DISSECTOR_PATH } from "../runtime/mod.ts";
import { readTlsConnections, REASSEMBLY_PREFS, tshark } from "./tls_records.ts";

export interface CaptureMessage {
  frame: number;
  /** Seconds since the first packet. */
  time: number;
  stream: number;
  srcPort: number;
  dstPort: number;
  /** `CUHK`, `Blackboard`, `Bank`, `TLS`. */
  protocol: string;
  label: string;
}

export const LUA_DISSECTOR = DISSECTOR_PATH;

const LAB_FIELDS: Record<string, string> = {
  "cuhk.message": "CUHK",
  "blackboard.message": "Blackboard",
  "bank.message": "Bank",
};

/**
 * The lab protocols' messages in a capture, dissected by pcap/lab.lua (on any port: the dissector
 * also recognises conversations heuristically). Several messages in one frame come in order.
 */
export async function readLabMessages(
  file: string,
  options: { lua?: string } = {},
): Promise<CaptureMessage[]> {
  const fields = Object.keys(LAB_FIELDS);
  const out = await tshark([
    "-X",
    `lua_script:${options.lua ?? LUA_DISSECTOR}`,
    "-r",
    file,
    ...REASSEMBLY_PREFS,
    "-Y",
    "cuhk || blackboard || bank",
    "-T",
    "fields",
    "-E",
    "occurrence=a",
    "-E",
    "aggregator=;",
    "-e",
    "frame.number",
    "-e",
    "frame.time_relative",
    "-e",
    "tcp.stream",
    "-e",
    "tcp.srcport",
    "-e",
    "tcp.dstport",
    ...fields.flatMap((f) => ["-e", f]),
  ]);
  const messages: CaptureMessage[] = [];
  for (const line of out.split("\n")) {
    if (line.trim() === "") continue;
    const [frame, time, stream, src, dst, ...labels] = line.split("\t");
    labels.forEach((list, i) => {
      if (!list) return;
      for (const label of list.split(";")) {
        messages.push({
          frame: Number(frame),
          time: Number(time),
          stream: Number(stream),
          srcPort: Number(src),
          dstPort: Number(dst),
          protocol: LAB_FIELDS[fields[i]!]!,
          label,
        });
      }
    });
  }
  return messages;
}

/** tshark's flags for a segment whose bytes came before: retransmissions of every kind. */
export const RETRANSMITTED = "tcp.analysis.retransmission || tcp.analysis.fast_retransmission || " +
  "tcp.analysis.spurious_retransmission";

/**
 * Per TCP stream of the lab protocols: the payload bytes on the wire and the bytes of the frames
 * pcap/lab.lua named. Equal counts mean every byte belongs to a named message.
 */
export async function labCoverage(
  file: string,
  options: { lua?: string } = {},
): Promise<Map<number, { wire: number; named: number }>> {
  const out = await tshark([
    "-X",
    `lua_script:${options.lua ?? LUA_DISSECTOR}`,
    "-r",
    file,
    ...REASSEMBLY_PREFS,
    "-Y",
    // A segment sent again (a retransmission over loopback, or a duplicate) carries bytes already
    // counted: reassembly skips it, so counting it would leave its bytes "unnamed".
    `tcp.len > 0 && !(${RETRANSMITTED})`,
    "-T",
    "fields",
    "-E",
    "occurrence=a",
    "-E",
    "aggregator=,",
    "-e",
    "tcp.stream",
    "-e",
    "tcp.len",
    "-e",
    "cuhk.length",
    "-e",
    "blackboard.length",
    "-e",
    "bank.length",
  ]);
  const streams = new Map<number, { wire: number; named: number }>();
  for (const line of out.trim().split("\n")) {
    if (line === "") continue;
    const [stream, len, ...lengths] = line.split("\t");
    const s = streams.get(Number(stream)) ?? { wire: 0, named: 0 };
    s.wire += Number(len || 0);
    for (const l of lengths.join(",").split(",").filter((x) => x !== "")) s.named += 4 + Number(l);
    streams.set(Number(stream), s);
  }
  return streams;
}

/** The chat messages (system 3) that pcap/lab.lua finds in decrypted TLS, by frame, in order. */
export async function readChatTypes(
  file: string,
  options: { lua?: string } = {},
): Promise<Map<number, string[]>> {
  const out = await tshark([
    "-X",
    `lua_script:${options.lua ?? LUA_DISSECTOR}`,
    "-r",
    file,
    ...REASSEMBLY_PREFS,
    "-Y",
    "labchat",
    "-T",
    "fields",
    "-E",
    "occurrence=a",
    "-E",
    "aggregator=,",
    "-e",
    "frame.number",
    "-e",
    "labchat.type",
  ]);
  const byFrame = new Map<number, string[]>();
  for (const line of out.split("\n")) {
    const [frame, types] = line.split("\t");
    if (frame && types) byFrame.set(Number(frame), types.split(","));
  }
  return byFrame;
}

/**
 * TLS records as messages, named decrypted where possible; application data carrying chat
 * messages is named by them (`Application Data [chat say]`).
 */
export async function readTlsMessages(
  file: string,
  serverPorts: readonly number[],
): Promise<CaptureMessage[]> {
  const conns = await readTlsConnections(file, { serverPorts });
  const chat = await readChatTypes(file);
  const used = new Map<number, number>();
  const name = (frame: number, label: string): string => {
    const types = chat.get(frame);
    if (label !== "Application Data" || !types) return label;
    const k = used.get(frame) ?? 0;
    used.set(frame, k + 1);
    return k < types.length ? `${label} [chat ${types[k]}]` : label;
  };
  return conns.flatMap((c) => {
    const clientPort = Number(c.client.slice(c.client.lastIndexOf(":") + 1));
    const serverPort = Number(c.server.slice(c.server.lastIndexOf(":") + 1));
    return c.records.map((r) => ({
      frame: r.frame,
      time: r.time,
      stream: r.stream,
      srcPort: r.from === "client" ? clientPort : serverPort,
      dstPort: r.from === "client" ? serverPort : clientPort,
      protocol: "TLS",
      label: name(r.frame, r.content ?? r.wire),
    }));
  });
}

export interface ActorMap {
  /** Server port → the server's name (`CUHK`, `Blackboard`, `chat server`). */
  servers: Record<number, string>;
  /** Server port → what its clients are called (`Student`, `Alice`, `chat client`). */
  clients: Record<number, string>;
  /** Server ports whose clients get a lane each, numbered (`chat client 1`, `chat client 2`). */
  numbered?: number[];
  /**
   * Clients told apart by the first message of their connection (a server that is also a client:
   * Blackboard's `CRL request` to the CA).
   */
  byFirstMessage?: Record<string, string>;
  /** Lane order, left to right (actors not listed follow in order of appearance). */
  order?: string[];
}

export interface Arrow {
  from: string;
  to: string;
  label: string;
  time: number;
  frame: number;
  protocol: string;
}

export interface Ladder {
  actors: string[];
  arrows: Arrow[];
}

/** Places messages between actors; messages that touch no known server port are left out. */
export function buildLadder(messages: readonly CaptureMessage[], actors: ActorMap): Ladder {
  const sorted = [...messages].sort((a, b) => a.frame - b.frame || 0);
  const names: string[] = [];
  const add = (n: string) => {
    if (!names.includes(n)) names.push(n);
  };
  const clientNames = new Map<string, string>();
  const counters = new Map<number, number>();
  const arrows: Arrow[] = [];
  const firstLabel = new Map<number, string>();
  for (const m of sorted) if (!firstLabel.has(m.stream)) firstLabel.set(m.stream, m.label);
  for (const m of sorted) {
    const toServer = actors.servers[m.dstPort] !== undefined;
    const serverPort = toServer ? m.dstPort : m.srcPort;
    const server = actors.servers[serverPort];
    if (server === undefined) continue;
    const key = `${serverPort}/${m.stream}`;
    let client = clientNames.get(key);
    const byFirst = actors.byFirstMessage?.[firstLabel.get(m.stream)!];
    if (client === undefined && byFirst !== undefined) {
      client = byFirst;
      clientNames.set(key, client);
    }
    if (client === undefined) {
      const base = actors.clients[serverPort] ?? "client";
      if (actors.numbered?.includes(serverPort)) {
        const n = (counters.get(serverPort) ?? 0) + 1;
        counters.set(serverPort, n);
        client = `${base} ${n}`;
      } else {
        client = base;
      }
      clientNames.set(key, client);
    }
    add(client);
    add(server);
    arrows.push({
      from: toServer ? client : server,
      to: toServer ? server : client,
      label: m.label,
      time: m.time,
      frame: m.frame,
      protocol: m.protocol,
    });
  }
  const rank = (n: string) => {
    const i = actors.order?.indexOf(n) ?? -1;
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  const lanes = names.map((n, i) => ({ n, i })).sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i)
    .map((x) => x.n);
  return { actors: lanes, arrows };
}

function xml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

const LANE = 330;
const ROW = 30;
const TOP = 70;
const LEFT = 90;
const LABEL_MAX = 80;

function colour(a: Arrow): string {
  if (a.protocol !== "TLS") return a.label.startsWith("error") ? "#b3261e" : "#1a5fb4";
  if (/Alert/.test(a.label)) return "#b3261e";
  return a.label.startsWith("Application Data") ? "#6b6b6b" : "#26734d";
}

/** The ladder as a standalone SVG. */
export function renderSvg(ladder: Ladder, title: string): string {
  const width = LEFT + Math.max(ladder.actors.length, 2) * LANE;
  const height = TOP + (ladder.arrows.length + 1) * ROW + 20;
  const x = (name: string) => LEFT + ladder.actors.indexOf(name) * LANE + LANE / 2;
  const parts: string[] = [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="sans-serif" font-size="11">`,
    `<title>${xml(title)}</title>`,
    `<defs>${
      ["#1a5fb4", "#26734d", "#6b6b6b", "#b3261e"].map((c) =>
        `<marker id="m${c.slice(1)}" viewBox="0 0 10 10" refX="10" refY="5" markerWidth="8" ` +
        `markerHeight="8" orient="auto-start-reverse"><path d="M0,0L10,5L0,10z" fill="${c}"/></marker>`
      ).join("")
    }</defs>`,
    `<rect width="100%" height="100%" fill="#ffffff"/>`,
    `<text x="10" y="20" font-size="14" font-weight="bold">${xml(title)}</text>`,
    `<text x="10" y="${TOP - 8}" fill="#555">time (s)</text>`,
  ];
  for (const name of ladder.actors) {
    const cx = x(name);
    parts.push(
      `<rect x="${cx - 80}" y="${TOP - 36}" width="160" height="24" rx="4" fill="#eef2f7" ` +
        `stroke="#445"/>`,
      `<text x="${cx}" y="${TOP - 19}" text-anchor="middle" font-weight="bold">${xml(name)}</text>`,
      `<line x1="${cx}" y1="${TOP - 12}" x2="${cx}" y2="${height - 10}" stroke="#99a" ` +
        `stroke-dasharray="4 4"/>`,
    );
  }
  ladder.arrows.forEach((a, i) => {
    const y = TOP + (i + 1) * ROW;
    const x1 = x(a.from);
    const x2 = x(a.to);
    const c = colour(a);
    const label = a.label.length > LABEL_MAX ? a.label.slice(0, LABEL_MAX - 1) + "…" : a.label;
    parts.push(
      `<g><title>${
        xml(`frame ${a.frame}, ${a.time.toFixed(3)} s: ${a.from} → ${a.to}: ${a.label}`)
      }` +
        `</title>`,
      `<text x="10" y="${y + 4}" fill="#555">${a.time.toFixed(3)}</text>`,
      `<line x1="${x1}" y1="${y}" x2="${x2}" y2="${y}" stroke="${c}" stroke-width="1.5" ` +
        `marker-end="url(#m${c.slice(1)})"/>`,
      `<text x="${(x1 + x2) / 2}" y="${y - 5}" text-anchor="middle" fill="${c}">${
        xml(label)
      }</text></g>`,
    );
  });
  parts.push("</svg>");
  return parts.join("\n") + "\n";
}

/** An HTML page that shows the SVG and lists the messages. */
export function renderHtml(
  ladder: Ladder,
  svg: string,
  options: { title: string; capture: string },
): string {
  const rows = ladder.arrows.map((a, i) =>
    `<tr><td>${i + 1}</td><td>${a.time.toFixed(3)}</td><td>${a.frame}</td><td>${xml(a.from)} → ${
      xml(a.to)
    }</td><td>${xml(a.protocol)}</td><td>${xml(a.label)}</td></tr>`
  ).join("\n");
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<title>${xml(options.title)}</title>
<style>
body { font-family: sans-serif; margin: 2em; color: #222; }
table { border-collapse: collapse; margin-top: 1.5em; }
td, th { border: 1px solid #ccd; padding: 0.2em 0.6em; text-align: left; }
th { background: #eef2f7; }
figure { margin: 0; overflow-x: auto; }
</style>
</head>
<body>
<h1>${xml(options.title)}</h1>
<p>Capture: <a href="${xml(encodeURI(options.capture))}"><code>${
    xml(options.capture)
  }</code></a> (open it in Wireshark; TLS decrypts itself,
and <code>pcap/lab.lua</code> names the lab's messages). One arrow per message, in capture order.</p>
<figure>
${svg}</figure>
<table>
<tr><th>#</th><th>time (s)</th><th>frame</th><th>between</th><th>protocol</th><th>message</th></tr>
${rows}
</table>
</body>
</html>
`;
}

/**
 * The ladder as text lines, `Student → CUHK (CA)  STEP 1 CSR`, runs of the same message between the
 * same actors collapsed (`× 3`).
 */
export function ladderLines(ladder: Ladder): string[] {
  const lines: string[] = [];
  const width = Math.max(0, ...ladder.arrows.map((a) => `${a.from} → ${a.to}`.length));
  let i = 0;
  while (i < ladder.arrows.length) {
    const a = ladder.arrows[i]!;
    let j = i + 1;
    while (
      j < ladder.arrows.length && ladder.arrows[j]!.label === a.label &&
      ladder.arrows[j]!.from === a.from && ladder.arrows[j]!.to === a.to
    ) j++;
    lines.push(
      `${`${a.from} → ${a.to}`.padEnd(width)}  ${a.label}${j - i > 1 ? `  × ${j - i}` : ""}`,
    );
    i = j;
  }
  return lines;
}

export interface DiagramFiles {
  svg: string;
  html: string;
  arrows: number;
  ladder: Ladder;
}

/**
 * Draws a capture: reads its lab messages and TLS records, writes `<base>.svg` and `<base>.html`
 * (mode 0644).
 */
export async function writeDiagram(
  capture: string,
  base: string,
  options: { title: string; actors: ActorMap; tlsPorts?: readonly number[] },
): Promise<DiagramFiles> {
  const messages = [
    ...await readLabMessages(capture),
    ...(options.tlsPorts?.length ? await readTlsMessages(capture, options.tlsPorts) : []),
  ];
  const ladder = buildLadder(messages, options.actors);
  const svg = renderSvg(ladder, options.title);
  // The page links the capture relative to itself when they share a directory.
  const dir = base.slice(0, base.lastIndexOf("/") + 1);
  const shown = dir !== "" && capture.startsWith(dir) ? capture.slice(dir.length) : capture;
  const html = renderHtml(ladder, svg, { title: options.title, capture: shown });
  await Deno.writeTextFile(`${base}.svg`, svg, { mode: 0o644 });
  await Deno.writeTextFile(`${base}.html`, html, { mode: 0o644 });
  await Deno.chmod(`${base}.svg`, 0o644);
  await Deno.chmod(`${base}.html`, 0o644);
  return { svg: `${base}.svg`, html: `${base}.html`, arrows: ladder.arrows.length, ladder };
}
