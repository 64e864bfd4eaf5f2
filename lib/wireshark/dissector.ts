/**
 * Generates `pcap/lab.lua`, the Wireshark dissector of the framed protocols of systems 1 and 2,
 * from the protocol tables in `lib/*_protocol.ts`: one source of truth for message codes, labels
 * and fields, so a capture names every message exactly as the code and the logs do.
 *
 * The generated Lua:
 * - registers one Wireshark protocol per table (`cuhk`, `blackboard`, `bank`) on its TCP port, and
 *   as a heuristic dissector on TCP, so captures made on other ports (the demo picks free ones)
 *   are recognised too: a conversation is claimed only when its first frame decodes exactly;
 * - reassembles frames (4-byte big-endian length, then the message) across TCP segments with
 *   `dissect_tcp_pdus`;
 * - shows each message by its label (`STEP 1 CSR`, `STEP 4 Bob's proof`…) in the Info column and
 *   the tree, with every field (`text` and `bytes` as u32 length + bytes, `uint` as 8 bytes);
 * - decodes fields that carry a message of another table (Blackboard's step-6 payload) in place;
 * - hands the fields that carry a DER certificate, CSR or CRL to Wireshark's own X.509 and PKCS#10
 *   dissectors, so the tree shows issuer, subject, validity and extensions under the field;
 * - does nothing when it is loaded a second time (installed as a plugin and given with `-X`);
 * - names the chat's JSON frames (system 3) inside decrypted TLS (`labchat`).
 */

import { DISSECTOR_PATH } from "../runtime/mod.ts";
import { BANK_PORT, bankProtocol } from "../bank/protocol.ts";
import { BLACKBOARD_PORT, blackboardProtocol, sessionProtocol } from "../blackboard/protocol.ts";
import { CA_PORT, caProtocol } from "../ca/protocol.ts";
import { CLIENT_MESSAGES, SERVER_MAX_FRAME, SERVER_MESSAGES } from "../chat/protocol.ts";
import type { FieldKind, MessageSpecs, Protocol } from "../wire/mod.ts";
import { CHAT_ENGINE, ENGINE } from "./dissector_lua.ts";

/**
 * A DER structure a `bytes` field carries: an X.509 certificate, a PKCS#10 certificate request or
 * a CRL. Wireshark's own dissector shows it under the field.
 */
export type DerKind = "certificate" | "csr" | "crl";

/**
 * Wireshark's dissector of each DER structure: by ASN.1 syntax (the `ber.syntax` table; X.509AF
 * and PKCS#10 register these), else by media type (the `media_type` table, as HTTP finds them).
 */
export const DER_DISSECTORS: Readonly<Record<DerKind, { syntax: string; mediaType: string }>> = {
  certificate: { syntax: "Certificate", mediaType: "application/pkix-cert" },
  csr: { syntax: "CertificationRequest", mediaType: "application/pkcs10" },
  crl: { syntax: "CertificateList", mediaType: "application/pkix-crl" },
};

export interface DissectedProtocol {
  // deno-lint-ignore no-explicit-any
  protocol: Protocol<any>;
  /** Wireshark's protocol name and filter prefix: lower case, e.g. `cuhk`. */
  abbrev: string;
  /** The default TCP port. */
  port: number;
  /** A one-line description for Wireshark's protocol list. */
  title: string;
  /** `message.field` → the table whose message that field carries. */
  nested?: Record<string, { abbrev: string; protocol: Protocol<MessageSpecs> }>;
  /** `message.field` → the DER structure that `bytes` field carries. */
  der?: Record<string, DerKind>;
}

/** The lab's framed protocols, in the order the heuristic tries them. */
export const LAB_DISSECTORS: readonly DissectedProtocol[] = [
  {
    protocol: caProtocol,
    abbrev: "cuhk",
    port: CA_PORT,
    title: "CUHK enrolment (secure-channel lab, system 1, steps 1-2)",
    der: { "csr.csr": "csr", "certificate.certificate": "certificate", "crl.crl": "crl" },
  },
  {
    protocol: blackboardProtocol,
    abbrev: "blackboard",
    port: BLACKBOARD_PORT,
    title: "Blackboard report upload (secure-channel lab, system 1, steps 3-6)",
    // Step-6 records carry a session message in the clear (only its MAC protects it).
    nested: {
      "record.payload": { abbrev: "session", protocol: sessionProtocol },
    },
    der: {
      "request.certificate": "certificate",
      "sessionKey.certificate": "certificate",
      "sessionKey.crl": "crl",
      "seedRequest.certificate": "certificate",
    },
  },
  {
    protocol: bankProtocol,
    abbrev: "bank",
    port: BANK_PORT,
    title: "Bank of Bob (secure-channel lab, system 2)",
    der: {
      "hiBob.certificate": "certificate",
      "hiBob.crl": "crl",
      "secret.certificate": "certificate",
    },
  },
];

/** Where the generated dissector lives. */
export { DISSECTOR_PATH };

/** A word for a POSIX shell: as it is when it needs no quotes, else in single quotes. */
export function shellWord(word: string): string {
  return /^[\w@%+=:,./-]+$/.test(word) ? word : `'${word.replace(/'/g, "'\\''")}'`;
}

/**
 * The commands that open `capture` with the lab's dissector, Wireshark's and tshark's, to run in
 * `cwd` (default the current folder): paths inside `cwd` are relative to it, e.g.
 * `wireshark -X lua_script:pcap/lab.lua pcap/captures/upload.pcapng`.
 */
export function openCommands(
  capture: string,
  options: { cwd?: string } = {},
): { wireshark: string; tshark: string } {
  const cwd = (options.cwd ?? Deno.cwd()).replace(/\/+$/, "");
  const rel = (path: string) => path.startsWith(cwd + "/") ? path.slice(cwd.length + 1) : path;
  const lua = shellWord(`lua_script:${rel(DISSECTOR_PATH)}`);
  const file = shellWord(rel(capture));
  return {
    wireshark: `wireshark -X ${lua} ${file}`,
    tshark: `tshark -X ${lua} -r ${file}`,
  };
}

/** The chat's message types (system 3: JSON in frames, inside TLS), by direction. */
export const CHAT_TYPES = {
  client: Object.keys(CLIENT_MESSAGES),
  server: Object.keys(SERVER_MESSAGES),
};

/** The dissector as `deno task dissector` writes it. */
export function labDissector(): string {
  return generateDissector(LAB_DISSECTORS, { chat: CHAT_TYPES });
}

/** Bytes shown in the Info column for a short text field; longer ones are cut. */
const INFO_TEXT_MAX = 48;
/** Frames longer than this are treated as garbage by the heuristic. */
const HEURISTIC_MAX_FRAME = 16 * 1024 * 1024;

function luaString(s: string): string {
  let out = '"';
  for (const ch of new TextEncoder().encode(s)) {
    if (ch === 0x22 || ch === 0x5c) out += "\\" + String.fromCharCode(ch);
    else if (ch >= 0x20 && ch < 0x7f) out += String.fromCharCode(ch);
    else out += "\\" + ch.toString().padStart(3, "0");
  }
  return out + '"';
}

function checkAbbrev(abbrev: string): string {
  if (!/^[a-z][a-z0-9_]*$/.test(abbrev)) {
    throw new RangeError(`Bad dissector name '${abbrev}': lower-case letters, digits and _`);
  }
  return abbrev;
}

function checkName(name: string, what: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(name)) throw new RangeError(`Bad ${what} name '${name}'`);
  return name;
}

/** The Lua table of one protocol's messages. */
function messagesTable(
  abbrev: string,
  protocol: Protocol<MessageSpecs>,
  extra: Pick<DissectedProtocol, "nested" | "der">,
  indent: string,
): string {
  const { nested, der } = extra;
  for (const key of Object.keys(der ?? {})) {
    const [type, field] = key.split(".");
    const kind = protocol.messages[type ?? ""]?.fields[field ?? ""];
    if (kind !== "bytes") {
      throw new RangeError(`DER field ${abbrev}.${key} is not a bytes field of ${protocol.name}`);
    }
  }
  const lines: string[] = [];
  const entries = Object.entries(protocol.messages).sort((a, b) => a[1].code - b[1].code);
  for (const [type, spec] of entries) {
    checkName(type, "message");
    if (spec.label.includes(";")) {
      throw new RangeError(`Label of ${protocol.name}.${type} contains ';' (tshark's aggregator)`);
    }
    const fields = Object.entries(spec.fields).map(([field, kind]) => {
      checkName(field, "field");
      const inner = nested?.[`${type}.${field}`];
      const innerPart = inner ? `, inner = ${luaString(checkAbbrev(inner.abbrev))}` : "";
      const derKind = der?.[`${type}.${field}`];
      const derPart = derKind ? `, der = ${luaString(derKind)}` : "";
      return `{ name = ${luaString(field)}, kind = ${
        luaString(kind as FieldKind)
      }${innerPart}${derPart} }`;
    });
    lines.push(
      `${indent}[${spec.code}] = { name = ${luaString(type)}, label = ${luaString(spec.label)},`,
      `${indent}  fields = { ${fields.join(", ")} } },`,
    );
  }
  return `{ -- ${abbrev}: ${protocol.name}\n${lines.join("\n")}\n${indent.slice(2)}}`;
}

export interface GenerateOptions {
  /**
   * The chat's message types: adds a dissector for its frames (a 4-byte length and a JSON object
   * with a `type`) inside decrypted TLS.
   */
  chat?: { client: readonly string[]; server: readonly string[] };
}

/** Generates the whole Lua dissector. */
export function generateDissector(
  protocols: readonly DissectedProtocol[],
  options: GenerateOptions = {},
): string {
  const tables: string[] = [];
  const seen = new Set<string>();
  const inner = new Map<string, Protocol<MessageSpecs>>();
  for (const p of protocols) {
    if (seen.has(checkAbbrev(p.abbrev))) throw new RangeError(`Duplicate dissector ${p.abbrev}`);
    seen.add(p.abbrev);
    for (const n of Object.values(p.nested ?? {})) inner.set(checkAbbrev(n.abbrev), n.protocol);
  }
  for (const p of protocols) {
    tables.push(
      `  {\n    abbrev = ${luaString(p.abbrev)}, name = ${luaString(p.protocol.name)},` +
        ` title = ${luaString(p.title)}, port = ${p.port},\n` +
        `    messages = ${messagesTable(p.abbrev, p.protocol, p, "      ")},\n  },`,
    );
  }
  const innerTables = [...inner].map(([abbrev, protocol]) =>
    `  ${abbrev} = { name = ${luaString(protocol.name)}, messages = ${
      messagesTable(abbrev, protocol, {}, "    ")
    } },`
  );
  return `${HEADER}
local PROTOCOLS = {
${tables.join("\n")}
}

-- Tables of messages carried inside a field of another message.
local INNER = {
${innerTables.join("\n")}
}

${LOAD_GUARD}
local INFO_TEXT_MAX = ${INFO_TEXT_MAX}
local HEURISTIC_MAX_FRAME = ${HEURISTIC_MAX_FRAME}

-- Wireshark's own dissectors of the DER structures some fields carry, by ASN.1 syntax, else by
-- media type.
local DER_DISSECTORS = {
${
    Object.entries(DER_DISSECTORS).map(([kind, d]) =>
      `  ${kind} = { syntax = ${luaString(d.syntax)}, media_type = ${luaString(d.mediaType)} },`
    ).join("\n")
  }
}
${ENGINE}${options.chat ? chatDissector(options.chat) : ""}`;
}

function chatDissector(types: { client: readonly string[]; server: readonly string[] }): string {
  const set = (names: readonly string[]) =>
    names.map((n) => `[${luaString(checkName(n, "chat message"))}] = true`).join(", ");
  return `
-- The chat (system 3): frames of a 4-byte length and one JSON object {"type": ..., ...}, inside
-- TLS. Shown once the capture's embedded key log decrypts the TLS records.
local CHAT_CLIENT_TYPES = { ${set(types.client)} }
local CHAT_SERVER_TYPES = { ${set(types.server)} }
local CHAT_MAX_FRAME = ${SERVER_MAX_FRAME}
${CHAT_ENGINE}`;
}

/** Words every generated dissector carries: how a file in the plugins folder is known as ours. */
export const GENERATED_MARK = "GENERATED by `deno task dissector`";

const HEADER =
  `-- Wireshark dissector for the secure-channel lab's framed protocols (systems 1 and 2):
-- the CUHK enrolment (TCP 9335), Blackboard (TCP 3141) and the bank (TCP 6001); and the chat's
-- frames (system 3) inside TLS, once the capture's embedded key log decrypts them.
--
-- ${GENERATED_MARK} from the protocol tables in lib/*_protocol.ts.
-- Do not edit by hand: change the tables and run the task again.
--
-- Use it once:        wireshark -X lua_script:pcap/lab.lua FILE.pcapng
--                     tshark -X lua_script:pcap/lab.lua -r FILE.pcapng
-- Install it for good: deno task dissector --install (--uninstall removes it), which copies it
--                     into Wireshark's personal Lua plugins folder ("Help > About Wireshark >
--                     Folders" shows it; Linux and macOS: ~/.local/lib/wireshark/plugins/), then
--                     restart Wireshark (or Analyze > Reload Lua Plugins). Installed and given
--                     with -X as well, the copy loaded first (the installed one) serves and the
--                     other does nothing.
--
-- Certificates, CSRs and CRLs in the lab's messages are shown by Wireshark's own X.509 and
-- PKCS#10 dissectors under their field (issuer, subject, validity, extensions).
--
-- Wire format: every frame is a 4-byte big-endian length and a message; a message is a one-byte
-- type and its fields in order: text and bytes are a 4-byte big-endian length and the bytes, uint
-- is 8 bytes big-endian. Frames are reassembled across TCP segments. On other ports than the
-- defaults a conversation is recognised when its first frame decodes exactly (heuristic).
`;

/** The global a loaded copy of the dissector sets, so that a second copy does nothing. */
export const LOADED_MARKER = "secure_channel_lab_dissector";

/**
 * Loading twice must be harmless: Wireshark loads the personal plugins folder first, then each
 * `-X lua_script:` script, all in one Lua state, and a second `Proto("cuhk", …)` is a Lua error
 * ("there cannot be two protocols with the same name"). The copy loaded first serves and a later
 * one returns before it registers anything. A copy made before this guard sets no marker: when
 * every one of its protocols is already a dissector, that counts as loaded too.
 */
const LOAD_GUARD = `
-- Loaded twice (installed in the personal Lua plugins folder and given with -X lua_script:, or
-- given twice): the copy loaded first serves, this one stops here without registering anything.
local function lab_loaded()
  if rawget(_G, "${LOADED_MARKER}") then return true end
  for _, spec in ipairs(PROTOCOLS) do
    -- Dissector.get gives nil for an unknown name (Wireshark 4.0); pcall also covers a version
    -- that raises an error instead. Either means "not loaded".
    local ok, d = pcall(Dissector.get, spec.abbrev)
    if not ok or d == nil then return false end
  end
  return true
end
if lab_loaded() then return end
${LOADED_MARKER} = true
`;
