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

const ENGINE = `
local function field_abbrev(prefix, msg, field)
  return prefix .. "." .. msg .. "." .. field
end

-- ProtoFields of one message table, keyed by message name then field name.
local function make_fields(prefix, messages, list)
  local by_msg = {}
  for _, msg in pairs(messages) do
    local fs = {}
    for _, f in ipairs(msg.fields) do
      local abbrev = field_abbrev(prefix, msg.name, f.name)
      local pf
      if f.kind == "text" then
        pf = ProtoField.string(abbrev, f.name)
      elseif f.kind == "bytes" then
        pf = ProtoField.bytes(abbrev, f.name)
      else
        pf = ProtoField.uint64(abbrev, f.name, base.DEC)
      end
      fs[f.name] = pf
      list[#list + 1] = pf
    end
    by_msg[msg.name] = fs
  end
  return by_msg
end

-- Whether bytes [offset, offset + len) of tvb hold exactly one well-formed message of the table.
local function well_formed(tvb, offset, len, messages)
  if len < 1 then return false end
  local msg = messages[tvb(offset, 1):uint()]
  if not msg then return false end
  local pos = offset + 1
  local stop = offset + len
  for _, f in ipairs(msg.fields) do
    if f.kind == "uint" then
      pos = pos + 8
    else
      if pos + 4 > stop then return false end
      pos = pos + 4 + tvb(pos, 4):uint()
    end
    if pos > stop then return false end
  end
  return pos == stop
end

-- Whether the start of a frame whose end is not captured yet (a large first frame split across
-- segments) is consistent with the table: a known type and field lengths that fit the frame.
local function plausible_start(tvb, offset, len, messages)
  local msg = messages[tvb(offset, 1):uint()]
  if not msg then return false end
  local avail = tvb:len()
  local pos = offset + 1
  local stop = offset + len
  for _, f in ipairs(msg.fields) do
    if f.kind == "uint" then
      pos = pos + 8
    else
      if pos + 4 > avail then return pos + 4 <= stop end
      pos = pos + 4 + tvb(pos, 4):uint()
    end
    if pos > stop then return false end
  end
  return pos == stop
end

local function printable(s)
  if #s > INFO_TEXT_MAX then s = s:sub(1, INFO_TEXT_MAX) .. "..." end
  return (s:gsub("[%c]", "."))
end

-- Wireshark's dissector of a DER structure (DER_DISSECTORS), looked up at first use: by then
-- every built-in dissector has registered its table entries, whenever this script was loaded.
-- false when this Wireshark has neither (the field then stays bytes).
local der_found = {}
local function der_dissector(kind)
  if der_found[kind] == nil then
    local names = DER_DISSECTORS[kind]
    local found = false
    for _, t in ipairs({ { "ber.syntax", names.syntax }, { "media_type", names.media_type } }) do
      local ok, d = pcall(function() return DissectorTable.get(t[1]):get_dissector(t[2]) end)
      if ok and d then
        found = d
        break
      end
    end
    der_found[kind] = found
  end
  return der_found[kind]
end

-- Shows the DER structure in range (a certificate, CSR or CRL) with Wireshark's own dissector,
-- under tree. The Protocol and Info columns stay the lab's (the ber.syntax dissectors leave them
-- alone; the media_type ones set their own). A structure that is not DER gets the dissector's own
-- expert errors, and never stops the lab's dissection.
local function show_der(kind, range, pinfo, tree)
  local d = der_dissector(kind)
  if not d then return end
  local protocol, info = tostring(pinfo.cols.protocol), tostring(pinfo.cols.info)
  local ok = pcall(d.call, d, range:tvb(), pinfo, tree)
  if tostring(pinfo.cols.protocol) ~= protocol then pinfo.cols.protocol:set(protocol) end
  if tostring(pinfo.cols.info) ~= info then pinfo.cols.info:set(info) end
  if not ok then
    tree:add_expert_info(PI_MALFORMED, PI_WARN, "Not a DER " .. kind .. " that Wireshark reads")
  end
end

-- The first message of a packet sets the Protocol and Info columns, the next ones append to Info.
-- Returns the new "first in packet" state (false).
local function show_in_columns(pinfo, protocol, text, first)
  if first then
    pinfo.cols.protocol:set(protocol)
    pinfo.cols.info:set(text)
  else
    pinfo.cols.info:append(", " .. text)
  end
  return false
end

-- Adds one message (type byte and fields) under tree; returns its label and a short summary.
local function dissect_message(tvb, pinfo, offset, len, tree, ctx)
  local code = tvb(offset, 1):uint()
  local msg = ctx.messages[code]
  if not msg then
    local item = tree:add(ctx.f_type, tvb(offset, 1))
    item:add_expert_info(PI_MALFORMED, PI_ERROR, "Unknown message type")
    return string.format("unknown message type 0x%02x", code), "", nil
  end
  local sub = tree:add(tvb(offset, len), msg.label)
  sub:add(ctx.f_type, tvb(offset, 1)):append_text(" (" .. msg.name .. ")")
  sub:add(ctx.f_label, tvb(offset, 1), msg.label):set_generated()
  local pos = offset + 1
  local stop = offset + len
  local summary = {}
  local inner_label = nil
  local fields = ctx.fields[msg.name]
  for _, f in ipairs(msg.fields) do
    if f.kind == "uint" then
      if pos + 8 > stop then
        sub:add_expert_info(PI_MALFORMED, PI_ERROR, "Truncated field " .. f.name)
        break
      end
      local v = tvb(pos, 8):uint64()
      sub:add(fields[f.name], tvb(pos, 8))
      summary[#summary + 1] = f.name .. "=" .. tostring(v)
      pos = pos + 8
    else
      if pos + 4 > stop then
        sub:add_expert_info(PI_MALFORMED, PI_ERROR, "Truncated length of " .. f.name)
        break
      end
      local n = tvb(pos, 4):uint()
      if pos + 4 + n > stop then
        sub:add_expert_info(PI_MALFORMED, PI_ERROR, "Truncated field " .. f.name)
        break
      end
      local fsub
      if n == 0 then
        fsub = sub:add(tvb(pos, 4), f.name .. ": (empty)")
      elseif f.kind == "text" then
        fsub = sub:add_packet_field(fields[f.name], tvb(pos + 4, n), ENC_UTF_8)
      else
        fsub = sub:add(fields[f.name], tvb(pos + 4, n))
      end
      fsub:append_text(" (" .. n .. " bytes)")
      fsub:add(ctx.f_field_length, tvb(pos, 4))
      if f.der and n > 0 then
        show_der(f.der, tvb(pos + 4, n), pinfo, fsub)
      end
      if f.kind == "text" and n > 0 then
        summary[#summary + 1] = f.name .. "=\\"" .. printable(tvb(pos + 4, n):string(ENC_UTF_8)) .. "\\""
      end
      if f.inner and n > 0 then
        local ictx = ctx.inner[f.inner]
        if well_formed(tvb, pos + 4, n, ictx.messages) then
          local label, isum = dissect_message(tvb, pinfo, pos + 4, n, fsub, ictx)
          inner_label = label
          summary[#summary + 1] = "[" .. label .. (isum ~= "" and (" " .. isum) or "") .. "]"
        end
      end
      pos = pos + 4 + n
    end
  end
  if pos < stop then
    sub:add_expert_info(PI_MALFORMED, PI_ERROR, (stop - pos) .. " trailing bytes")
  end
  return msg.label, table.concat(summary, " "), inner_label
end

local function register(spec)
  local proto = Proto(spec.abbrev, spec.title)
  local list = {}
  local f_length = ProtoField.uint32(spec.abbrev .. ".length", "Frame length", base.DEC)
  local f_type = ProtoField.uint8(spec.abbrev .. ".type", "Message type", base.HEX)
  local f_label = ProtoField.string(spec.abbrev .. ".label", "Step")
  local f_field_length = ProtoField.uint32(spec.abbrev .. ".field_length", "Field length", base.DEC)
  local f_message = ProtoField.string(spec.abbrev .. ".message", "Message")
  list[1], list[2], list[3], list[4], list[5] = f_length, f_type, f_label, f_field_length, f_message
  local ctx = {
    messages = spec.messages,
    fields = make_fields(spec.abbrev, spec.messages, list),
    f_type = f_type, f_label = f_label, f_field_length = f_field_length,
    inner = {},
  }
  for _, msg in pairs(spec.messages) do
    for _, f in ipairs(msg.fields) do
      if f.inner and not ctx.inner[f.inner] then
        local it = INNER[f.inner]
        local f_itype = ProtoField.uint8(spec.abbrev .. "." .. f.inner .. ".type", it.name .. " message type", base.HEX)
        local f_ilabel = ProtoField.string(spec.abbrev .. "." .. f.inner .. ".label", it.name .. " step")
        list[#list + 1] = f_itype
        list[#list + 1] = f_ilabel
        ctx.inner[f.inner] = {
          messages = it.messages,
          fields = make_fields(spec.abbrev .. "." .. f.inner, it.messages, list),
          f_type = f_itype, f_label = f_ilabel, f_field_length = f_field_length,
          inner = {},
        }
      end
    end
  end
  proto.fields = list

  local first_in_packet = true

  local function get_len(tvb, pinfo, offset)
    return 4 + tvb(offset, 4):uint()
  end

  local function dissect_pdu(tvb, pinfo, tree)
    local len = tvb(0, 4):uint()
    local root = tree:add(proto, tvb(0, 4 + len))
    root:add(f_length, tvb(0, 4))
    local label, summary, inner_label
    if len == 0 then
      root:add_expert_info(PI_MALFORMED, PI_ERROR, "Empty message")
      label, summary = "empty frame", ""
    else
      label, summary, inner_label = dissect_message(tvb, pinfo, 4, len, root, ctx)
    end
    local full = label .. (inner_label and (" [" .. inner_label .. "]") or "")
    root:add(f_message, tvb(0, 4), full):set_generated()
    root:append_text(", " .. full)
    local text = label .. (summary ~= "" and (" " .. summary) or "")
    first_in_packet = show_in_columns(pinfo, spec.name, text, first_in_packet)
    return 4 + len
  end

  function proto.dissector(tvb, pinfo, tree)
    first_in_packet = true
    return dissect_tcp_pdus(tvb, tree, 4, get_len, dissect_pdu, true)
  end

  local function heuristic(tvb, pinfo, tree)
    if tvb:len() < 5 then return false end
    local len = tvb(0, 4):uint()
    if len < 1 or len > HEURISTIC_MAX_FRAME then return false end
    if tvb:len() >= 4 + len then
      if not well_formed(tvb, 4, len, spec.messages) then return false end
    elseif not plausible_start(tvb, 4, len, spec.messages) then
      return false
    end
    pinfo.conversation = proto
    proto.dissector(tvb, pinfo, tree)
    return true
  end

  DissectorTable.get("tcp.port"):add(spec.port, proto)
  proto:register_heuristic("tcp", heuristic)
end

for _, spec in ipairs(PROTOCOLS) do
  register(spec)
end
`;

const CHAT_ENGINE = `
local chat = Proto("labchat", "Lab chat (secure-channel lab, system 3, inside TLS)")
local c_length = ProtoField.uint32("labchat.length", "Frame length", base.DEC)
local c_type = ProtoField.string("labchat.type", "Message type")
local c_text = ProtoField.string("labchat.text", "Text")
chat.fields = { c_length, c_type, c_text }
local json = Dissector.get("json")
local chat_first = true

local function chat_type(s)
  return s:match('^%s*{%s*"type"%s*:%s*"([%w_]+)"')
end

local function chat_pdu(tvb, pinfo, tree)
  local len = tvb(0, 4):uint()
  local body = tvb(4, len)
  local s = body:string(ENC_UTF_8)
  local t = chat_type(s) or "?"
  local root = tree:add(chat, tvb(0, 4 + len), "Lab chat, " .. t)
  root:add(c_length, tvb(0, 4))
  root:add(c_type, body, t)
  local text = s:match('"text"%s*:%s*"(.-[^\\\\])"') or s:match('"text"%s*:%s*""')
  if text then root:add(c_text, body, text) end
  if not (CHAT_CLIENT_TYPES[t] or CHAT_SERVER_TYPES[t]) then
    root:add_expert_info(PI_MALFORMED, PI_WARN, "Unknown chat message type")
  end
  if json then json:call(body:tvb(), pinfo, root) end
  local nick = s:match('"nick"%s*:%s*"([^"\\\\]*)"') or s:match('"from"%s*:%s*"([^"\\\\]*)"')
  local info = "chat " .. t .. (nick and (" " .. printable(nick)) or "") ..
    (text and (' "' .. printable(text) .. '"') or "")
  chat_first = show_in_columns(pinfo, "Chat", info, chat_first)
  return 4 + len
end

function chat.dissector(tvb, pinfo, tree)
  chat_first = true
  return dissect_tcp_pdus(tvb, tree, 4, function(t, p, off) return 4 + t(off, 4):uint() end,
    chat_pdu, true)
end

local function chat_heuristic(tvb, pinfo, tree)
  if tvb:len() < 6 then return false end
  local len = tvb(0, 4):uint()
  if len < 2 or len > CHAT_MAX_FRAME then return false end
  local head = tvb(4, math.min(len, tvb:len() - 4, 64)):string(ENC_UTF_8)
  local t = chat_type(head)
  if not t or not (CHAT_CLIENT_TYPES[t] or CHAT_SERVER_TYPES[t]) then return false end
  -- No conversation is claimed: TCP must keep handing the bytes to TLS; each decrypted record
  -- comes back through this heuristic.
  chat.dissector(tvb, pinfo, tree)
  return true
end

chat:register_heuristic("tls", chat_heuristic)
`;
