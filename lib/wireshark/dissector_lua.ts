/**
 * The fixed Lua of pcap/lab.lua, as text: the engine that registers one Wireshark protocol per
 * table of lib's protocols (fields, framing across TCP segments, the heuristic for other ports, the
 * X.509 hand-over) and the chat's frames inside TLS. lib/wireshark/dissector.ts puts the generated
 * tables in front of it.
 */

export const ENGINE = `
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

export const CHAT_ENGINE = `
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
