/**
 * A capture as a message-sequence (ladder): one lane per actor, one arrow per message. Messages come
 * from the dissected capture: the lab's framed protocols through pcap/lab.lua (one arrow per frame:
 * `STEP 1 CSR`, `STEP 4 Bob's proof`…, an `error` with its reason, a CRL with its number) and TLS record by record
 * (`Client Hello`, `Server Hello, Certificate, …`, decrypted names where the key log allows, chat
 * clients named by the nickname they join with).
 *
 * Here: reading the capture, placing its messages between actors, an attack's halves (seed mode,
 * the default) and the notes that mark what Trudy changed. ladder_svg.ts draws it; diagram.ts
 * writes the files.
 */

import type { Redirect } from "../net/mod.ts";
import { DISSECTOR_PATH } from "../runtime/mod.ts";
import { readTlsConnections, REASSEMBLY_PREFS, tshark } from "./tls_records.ts";

export interface CaptureMessage {
  frame: number;
  /** Seconds since the first packet. */
  time: number;
  stream: number;
  srcPort: number;
  dstPort: number;
  /** The IP addresses (`10.0.1.10`, `::1`), where read. */
  src?: string;
  dst?: string;
  /**
   * The router answered this connection itself (see `streamsAnsweredInPlace`): with `redirects`
   * in the actor map, a connection Trudy took over in place (unless one end is in `addresses`).
   */
  intercepted?: boolean;
  /** `CUHK`, `Blackboard`, `Bank`, `TLS`. */
  protocol: string;
  label: string;
  /** What the message says beyond its name: an `error`'s reason, a CRL's number (`number 2`). */
  detail?: string;
  /** The nickname a chat client joins with, on the TLS record that carries its `hello`. */
  nick?: string;
}

export const LUA_DISSECTOR = DISSECTOR_PATH;

const LAB_FIELDS: Record<string, string> = {
  "cuhk.message": "CUHK",
  "blackboard.message": "Blackboard",
  "bank.message": "Bank",
};

/**
 * The `reason` of each protocol's `error`, and of Blackboard's `error` inside a MAC-only record
 * (labelled `… [error]`).
 */
const ERROR_REASONS = [
  { protocol: "CUHK", field: "cuhk.error.reason", inner: false },
  { protocol: "Blackboard", field: "blackboard.error.reason", inner: false },
  { protocol: "Blackboard", field: "blackboard.session.error.reason", inner: true },
  { protocol: "Bank", field: "bank.error.reason", inner: false },
] as const;

/** The number of a CRL, from Wireshark's own X.509 dissector (pcap/lab.lua hands CRLs to it). */
const CRL_NUMBER = "x509ce.CRLNumber";

/** tshark's separator between several values of one field: no label or reason contains it. */
const AGGREGATOR = "\x1f";

/** Whether a message is an error: `error` itself, or an `error` inside a record (`… [error]`). */
export function isError(label: string): boolean {
  return label === "error" || label.endsWith(" [error]");
}

/**
 * The lab protocols' messages in a capture, dissected by pcap/lab.lua (on any port: the dissector
 * also recognises conversations heuristically). Several messages in one frame come in order. Each
 * `error` carries its reason as `detail`, and each CRL its number.
 */
export async function readLabMessages(
  file: string,
  options: { lua?: string } = {},
): Promise<CaptureMessage[]> {
  const fields = Object.keys(LAB_FIELDS);
  const out = await tshark([
    ...labReading(file, options.lua),
    "-Y",
    "cuhk || blackboard || bank",
    "-T",
    "fields",
    "-E",
    "occurrence=a",
    "-E",
    `aggregator=${AGGREGATOR}`,
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
    "-e",
    "ip.src",
    "-e",
    "ip.dst",
    ...fields.flatMap((f) => ["-e", f]),
    ...ERROR_REASONS.flatMap((r) => ["-e", r.field]),
    "-e",
    CRL_NUMBER,
  ]);
  const messages: CaptureMessage[] = [];
  for (const line of out.split("\n")) {
    if (line.trim() === "") continue;
    const [frame, time, stream, src, dst, srcIp, dstIp, ...rest] = line.split("\t");
    const labels = rest.slice(0, fields.length);
    const reasons = rest.slice(fields.length, fields.length + ERROR_REASONS.length);
    const crlNumbers = rest[fields.length + ERROR_REASONS.length]?.split(AGGREGATOR)
      .filter((n) => n !== "") ?? [];
    // A CRL's number, when each CRL message of the frame has one (a stapled CRL in a certificate
    // message has one too: then none is given).
    const crls = labels.flatMap((l) => l ? l.split(AGGREGATOR) : []).filter((l) => l === "CRL");
    const numbers = crls.length === crlNumbers.length ? [...crlNumbers] : [];
    labels.forEach((list, i) => {
      if (!list) return;
      const protocol = LAB_FIELDS[fields[i]!]!;
      // The k-th error of a protocol in this frame gets the k-th reason of that protocol.
      const pending = ERROR_REASONS.map((r, j) => ({
        ...r,
        values: r.protocol === protocol && reasons[j] ? reasons[j]!.split(AGGREGATOR) : [],
      }));
      for (const label of list.split(AGGREGATOR)) {
        const m: CaptureMessage = {
          frame: Number(frame),
          time: Number(time),
          stream: Number(stream),
          srcPort: Number(src),
          dstPort: Number(dst),
          ...(srcIp ? { src: srcIp } : {}),
          ...(dstIp ? { dst: dstIp } : {}),
          protocol,
          label,
        };
        if (label === "CRL" && numbers.length > 0) m.detail = `number ${numbers.shift()}`;
        if (isError(label)) {
          const inner = label !== "error";
          const reason = pending.find((p) => p.inner === inner && p.values.length > 0)?.values
            .shift();
          if (reason !== undefined) m.detail = reason;
        }
        messages.push(m);
      }
    });
  }
  return messages;
}

/**
 * The preferences of every reading with pcap/lab.lua: the reassembly ones, and TCP's heuristic
 * dissectors tried before its table of ports. The kernel picks the lab's ports (servers on port 0,
 * clients' ephemeral ports), and Wireshark registers dissectors on a few ports of that range:
 * Trudy's connection to Blackboard, whose client port was 44818, went whole to EtherNet/IP, and
 * lab.lua's heuristic never saw it (a demo capture of 28 Nov, kept as
 * tests/_fixtures/port_collision.pcapng; the same happened in earlier full suites). lab.lua's
 * heuristics take a connection only when its first frame decodes exactly (or, cut by the segment,
 * when its type and field lengths fit), so trying them first leaves other protocols' connections
 * to their dissectors (every capture in pcap/captures read the same with it and without, by
 * review).
 */
export const LAB_PREFS: readonly string[] = [
  ...REASSEMBLY_PREFS,
  "-o",
  "tcp.try_heuristic_first:TRUE",
];

/** tshark's arguments that read `file` with pcap/lab.lua (or `lua`) and `LAB_PREFS`. */
export function labReading(file: string, lua: string = LUA_DISSECTOR): string[] {
  return ["-X", `lua_script:${lua}`, "-r", file, ...LAB_PREFS];
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
    ...labReading(file, options.lua),
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

/** One chat message that pcap/lab.lua found in decrypted TLS: its type, and a `hello`'s nickname. */
export interface ChatFrame {
  type: string;
  nick?: string;
}

/**
 * The chat messages (system 3) that pcap/lab.lua finds in decrypted TLS, by frame, in order; the
 * nickname of each `hello` comes from Wireshark's own JSON dissector.
 */
export async function readChatTypes(
  file: string,
  options: { lua?: string } = {},
): Promise<Map<number, ChatFrame[]>> {
  const out = await tshark([
    ...labReading(file, options.lua),
    "-Y",
    "labchat",
    "-T",
    "fields",
    "-E",
    "occurrence=a",
    "-E",
    `aggregator=${AGGREGATOR}`,
    "-e",
    "frame.number",
    "-e",
    "labchat.type",
    "-e",
    "json.member_with_value",
  ]);
  const byFrame = new Map<number, ChatFrame[]>();
  for (const line of out.split("\n")) {
    const [frame, types, members] = line.split("\t");
    if (!frame || !types) continue;
    const chat: ChatFrame[] = types.split(AGGREGATOR).map((type) => ({ type }));
    // Members come object by object, each starting with its `type`: the k-th `type:` member
    // starts the k-th message, and its `nick:` member (a hello's) names the client.
    let k = -1;
    for (const member of (members ?? "").split(AGGREGATOR)) {
      if (member.startsWith("type:")) k++;
      else if (member.startsWith("nick:") && chat[k]?.type === "hello") {
        chat[k]!.nick ??= member.slice("nick:".length);
      }
    }
    byFrame.set(Number(frame), chat);
  }
  return byFrame;
}

/**
 * TLS records as messages, named decrypted where possible; application data carrying chat
 * messages is named by them (`Application Data [chat say]`), and a chat `hello` carries the
 * client's nickname.
 */
export async function readTlsMessages(
  file: string,
  serverPorts: readonly number[],
): Promise<CaptureMessage[]> {
  const conns = await readTlsConnections(file, { serverPorts });
  const chat = await readChatTypes(file);
  const used = new Map<number, number>();
  const name = (frame: number, label: string): { label: string; nick?: string } => {
    const messages = chat.get(frame);
    if (label !== "Application Data" || !messages) return { label };
    const k = used.get(frame) ?? 0;
    used.set(frame, k + 1);
    const m = messages[k];
    if (!m) return { label };
    return { label: `${label} [chat ${m.type}]`, ...(m.nick ? { nick: m.nick } : {}) };
  };
  return conns.flatMap((c) => {
    const clientPort = Number(c.client.slice(c.client.lastIndexOf(":") + 1));
    const serverPort = Number(c.server.slice(c.server.lastIndexOf(":") + 1));
    const ip = (a: string) => a.slice(0, a.lastIndexOf(":")).replace(/^\[(.*)\]$/, "$1");
    const [clientIp, serverIp] = [ip(c.client), ip(c.server)];
    return c.records.map((r) => ({
      frame: r.frame,
      time: r.time,
      stream: r.stream,
      srcPort: r.from === "client" ? clientPort : serverPort,
      dstPort: r.from === "client" ? serverPort : clientPort,
      src: r.from === "client" ? clientIp : serverIp,
      dst: r.from === "client" ? serverIp : clientIp,
      protocol: "TLS",
      ...name(r.frame, r.content ?? r.wire),
    }));
  });
}

/**
 * The TCP connections a router answered in place, from a capture taken on several of its
 * interfaces (the netlab's: Trudy's bridges, each packet once as it arrived). A connection the
 * router forwards is opened on the client's interface and answered (SYN-ACK) on the server's; one
 * that an nft `redirect` hands to a process of the router's is answered by the router itself, on
 * the interface the SYN came in on. A stream whose SYN and SYN-ACK were captured on the same
 * interface is one of those, and so is one the router opened itself (its SYN leaves on the
 * interface the answer comes back on: tell those by the router's address). On a single interface,
 * such as loopback, every stream is: use it only for multi-interface captures. The answer is in
 * the capture itself, not in a clock.
 */
export async function streamsAnsweredInPlace(file: string): Promise<Set<number>> {
  const out = await tshark([
    "-r",
    file,
    "-Y",
    "tcp.flags.syn == 1",
    "-T",
    "fields",
    "-e",
    "tcp.stream",
    "-e",
    "tcp.flags.ack",
    "-e",
    "frame.interface_id",
  ]);
  const syn = new Map<number, string>();
  const synAck = new Map<number, string>();
  for (const line of out.split("\n")) {
    const [stream, ack, iface] = line.split("\t");
    if (!stream || iface === undefined) continue;
    const acked = ack === "1" || ack === "True";
    const into = acked ? synAck : syn;
    if (!into.has(Number(stream))) into.set(Number(stream), iface);
  }
  return new Set([...syn].filter(([s, i]) => synAck.get(s) === i).map(([s]) => s));
}

/** Part of a capture: an attack's seed-mode half or its default half, told apart by server port. */
export interface LadderSection {
  /** `seed`, `default`: what marks refer to. */
  key: string;
  /** What the band that opens the section says. */
  title: string;
  /** Server ports whose messages belong to this section. */
  ports: number[];
}

export interface ActorMap {
  /** Server port → the server's name (`CUHK`, `Blackboard`, `chat server`). */
  servers: Record<number, string>;
  /** Server port → what its clients are called (`Student`, `Alice`, `chat client`). */
  clients: Record<number, string>;
  /** Server ports whose clients get a lane each, numbered (`chat client 1`, `chat client 2`). */
  numbered?: number[];
  /**
   * Server ports whose clients get a lane each, named by the nickname they join the chat with
   * (`alice`, from the decrypted `hello`).
   */
  byNickname?: number[];
  /**
   * Names for a server port's clients in order of connection, for those not named by their first
   * message or nickname: a chat client refused in the TLS handshake, which sent no `hello`
   * (`python3`); the student who enrols directly after Trudy's relay did (`Trudy`, `Student`).
   * Then `numbered`, then `clients`.
   */
  inOrder?: Record<number, string[]>;
  /**
   * Clients told apart by the first message of their connection (a server that is also a client:
   * Blackboard's `CRL request` to the CA).
   */
  byFirstMessage?: Record<string, string>;
  /** Lane order, left to right (actors not listed follow in order of appearance). */
  order?: string[];
  /**
   * An attack's halves, by server port; a message on a port of none stays in the section of the
   * message before it.
   */
  sections?: LadderSection[];
  /**
   * Lanes by address (`10.0.2.1`, or `10.0.2.1:40000` for one port of it): an endpoint whose
   * address is listed is that lane, whatever its port says (Trudy's addresses on the netlab, where
   * her relay dials the real server's port). The port-keyed names above are still counted.
   */
  addresses?: Record<string, string>;
  /**
   * Trudy's transparent interceptions (the netlab's nft redirects): a message marked `intercepted`
   * on a connection to `server:port` is placed as if on her relay's port `to`, where loopback
   * shows it (the victim's leg ends at Trudy).
   */
  redirects?: Redirect[];
}

export interface Arrow {
  from: string;
  to: string;
  label: string;
  time: number;
  frame: number;
  protocol: string;
  /** An `error`'s reason, a CRL's number. */
  detail?: string;
  /** The key of its section (`seed`, `default`), when the capture has sections. */
  section?: string;
  /** A note in red: what Trudy changed in this message. */
  note?: string;
}

export interface Ladder {
  actors: string[];
  arrows: Arrow[];
  /** The sections' titles by key, in order (empty without sections). */
  sections: Array<{ key: string; title: string }>;
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
  const nickOf = new Map<number, string>();
  for (const m of sorted) {
    if (!firstLabel.has(m.stream)) firstLabel.set(m.stream, m.label);
    if (m.nick !== undefined && !nickOf.has(m.stream)) nickOf.set(m.stream, m.nick);
  }
  const inOrderUsed = new Map<number, number>();
  const sectionOf = new Map<number, string>();
  for (const s of actors.sections ?? []) for (const p of s.ports) sectionOf.set(p, s.key);
  let section: string | undefined;
  const redirected = (addr: string | undefined, port: number) =>
    actors.redirects?.find((r) => r.server === addr && r.port === port)?.to;
  const byAddress = (addr: string | undefined, port: number) =>
    addr === undefined
      ? undefined
      : actors.addresses?.[`${addr.includes(":") ? `[${addr}]` : addr}:${port}`] ??
        actors.addresses?.[addr];
  for (const original of sorted) {
    let m = original;
    // Trudy's own connections (her addresses) are answered on her interface too: not taken over.
    const own = byAddress(m.src, m.srcPort) ?? byAddress(m.dst, m.dstPort);
    if (m.intercepted && own === undefined) {
      const toPort = redirected(m.dst, m.dstPort);
      const fromPort = redirected(m.src, m.srcPort);
      if (toPort !== undefined) m = { ...m, dstPort: toPort };
      else if (fromPort !== undefined) m = { ...m, srcPort: fromPort };
    }
    const toServer = actors.servers[m.dstPort] !== undefined;
    const serverPort = toServer ? m.dstPort : m.srcPort;
    const portServer = actors.servers[serverPort];
    if (portServer === undefined) continue;
    const server = byAddress(toServer ? m.dst : m.src, serverPort) ?? portServer;
    const key = `${serverPort}/${m.stream}`;
    let client = clientNames.get(key);
    const byFirst = actors.byFirstMessage?.[firstLabel.get(m.stream)!];
    if (client === undefined && byFirst !== undefined) client = byFirst;
    if (client === undefined && actors.byNickname?.includes(serverPort)) {
      client = nickOf.get(m.stream);
    }
    if (client === undefined) {
      const n = inOrderUsed.get(serverPort) ?? 0;
      client = actors.inOrder?.[serverPort]?.[n];
      if (client !== undefined) inOrderUsed.set(serverPort, n + 1);
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
    }
    clientNames.set(key, client);
    client = byAddress(toServer ? m.src : m.dst, toServer ? m.srcPort : m.dstPort) ?? client;
    add(client);
    add(server);
    section = sectionOf.get(serverPort) ?? section;
    const arrow: Arrow = {
      from: toServer ? client : server,
      to: toServer ? server : client,
      label: m.label,
      time: m.time,
      frame: m.frame,
      protocol: m.protocol,
    };
    if (m.detail !== undefined) arrow.detail = m.detail;
    if (section !== undefined) arrow.section = section;
    arrows.push(arrow);
  }
  const rank = (n: string) => {
    const i = actors.order?.indexOf(n) ?? -1;
    return i < 0 ? Number.MAX_SAFE_INTEGER : i;
  };
  const lanes = names.map((n, i) => ({ n, i })).sort((a, b) => rank(a.n) - rank(b.n) || a.i - b.i)
    .map((x) => x.n);
  const used = new Set(arrows.map((a) => a.section));
  const sections = (actors.sections ?? []).filter((s) => used.has(s.key))
    .map(({ key, title }) => ({ key, title }));
  return { actors: lanes, arrows, sections };
}

/**
 * A key moment of an attack: the arrow it marks (its section, ends, the start of its label and
 * which of the arrows that match, 1 for the first) and the note in red that says what Trudy
 * changed there.
 */
export interface LadderMark {
  section?: string;
  from: string;
  to: string;
  /** The arrow's label starts with this. */
  label: string;
  /** And its detail is this (a CRL's `number 1`). */
  detail?: string;
  /** Which of the matching arrows, counting from 1 (default 1). */
  nth?: number;
  note: string;
}

/** Sets each mark's note on its arrow; returns the marks that found no arrow. */
export function markLadder(ladder: Ladder, marks: readonly LadderMark[]): LadderMark[] {
  const missed: LadderMark[] = [];
  for (const mark of marks) {
    const matching = ladder.arrows.filter((a) =>
      a.from === mark.from && a.to === mark.to && a.label.startsWith(mark.label) &&
      (mark.detail === undefined || a.detail === mark.detail) &&
      (mark.section === undefined || a.section === mark.section)
    );
    const arrow = matching[(mark.nth ?? 1) - 1];
    if (!arrow) {
      missed.push(mark);
      continue;
    }
    arrow.note = arrow.note === undefined ? mark.note : `${arrow.note}; ${mark.note}`;
  }
  return missed;
}

/** A mark as one line, for a report: `seed: Trudy → Alice "STEP 2 Hi, I'm Bob" #1`. */
export function describeMark(mark: LadderMark): string {
  return `${mark.section ? `${mark.section}: ` : ""}${mark.from} → ${mark.to} "${mark.label}…"${
    mark.detail !== undefined ? ` (${mark.detail})` : ""
  }${(mark.nth ?? 1) > 1 ? ` #${mark.nth}` : ""}`;
}

/** An arrow's text: its label, and an error's reason or a CRL's number after a colon. */
export function arrowText(a: Pick<Arrow, "label" | "detail">): string {
  return a.detail === undefined ? a.label : `${a.label}: ${a.detail}`;
}

/**
 * The ladder as text lines, `Student → CUHK (CA)  STEP 1 CSR`, runs of the same message between the
 * same actors collapsed (`× 3`), an error with its reason.
 */
export function ladderLines(ladder: Ladder): string[] {
  const lines: string[] = [];
  const width = Math.max(0, ...ladder.arrows.map((a) => `${a.from} → ${a.to}`.length));
  let i = 0;
  while (i < ladder.arrows.length) {
    const a = ladder.arrows[i]!;
    let j = i + 1;
    while (
      j < ladder.arrows.length && arrowText(ladder.arrows[j]!) === arrowText(a) &&
      ladder.arrows[j]!.from === a.from && ladder.arrows[j]!.to === a.to
    ) j++;
    lines.push(
      `${`${a.from} → ${a.to}`.padEnd(width)}  ${arrowText(a)}${j - i > 1 ? `  × ${j - i}` : ""}`,
    );
    i = j;
  }
  return lines;
}
