/**
 * The one peer-text sanitiser and the one byte formatter (lib/runtime/text.ts).
 */

import assert from "node:assert/strict";
import { formatBytes, printable, UNPRINTABLE } from "../../lib/runtime/mod.ts";

Deno.test("printable: ESC, CSI and OSC sequences become visible text", () => {
  assert.equal(printable("a\u001b[31mb"), "a\\u{1b}[31mb");
  assert.equal(printable("\u001b[2J\u001b[H"), "\\u{1b}[2J\\u{1b}[H");
  // OSC 0 (set the window title), ended by BEL or by ST (ESC \).
  assert.equal(printable("\u001b]0;pwned\u0007"), "\\u{1b}]0;pwned\\u{7}");
  assert.equal(printable("\u001b]8;;http://x\u001b\\"), "\\u{1b}]8;;http://x\\u{1b}\\");
});

Deno.test("printable: CR, LF, tab, NUL, DEL and the Unicode line separators stay on one line", () => {
  assert.equal(
    printable("ok\r\nWARNING forged line"),
    "ok\\u{d}\\u{a}WARNING forged line",
  );
  assert.equal(printable("\t\u0000\u007f"), "\\u{9}\\u{0}\\u{7f}");
  assert.equal(printable("a\u2028b\u2029c"), "a\\u{2028}b\\u{2029}c");
});

Deno.test("printable: C1 controls (CSI 0x9b, NEL 0x85, OSC 0x9d) are escaped", () => {
  assert.equal(printable("\u009b31m\u0085\u009d"), "\\u{9b}31m\\u{85}\\u{9d}");
  for (let c = 0x80; c <= 0x9f; c++) {
    assert.equal(printable(String.fromCharCode(c)), `\\u{${c.toString(16)}}`);
  }
});

Deno.test("printable: bidi embeddings, overrides and isolates are made visible", () => {
  // "Trojan source": U+202E would show 'gnp.exe' as 'exe.png'.
  assert.equal(printable("report\u202Egnp.exe"), "report\\u{202e}gnp.exe");
  for (const c of [0x202a, 0x202b, 0x202c, 0x202d, 0x202e, 0x2066, 0x2067, 0x2068, 0x2069]) {
    assert.equal(printable(String.fromCodePoint(c)), `\\u{${c.toString(16)}}`);
  }
});

Deno.test("printable: ordinary text, other scripts and emoji pass unchanged", () => {
  for (const text of ["Hello, Bob", "學生 1155123456", "مرحبا", "naïve ☃ 🙂", "a\\u{1b}b"]) {
    assert.equal(printable(text), text);
  }
});

Deno.test("printable: long text is escaped throughout and never cut", () => {
  const long = "x".repeat(100_000) + "\u001b" + "y".repeat(100_000) + "\n";
  const out = printable(long);
  assert.equal(out.length, long.length + "\\u{1b}".length - 1 + "\\u{a}".length - 1);
  assert.ok(out.startsWith("x".repeat(100_000) + "\\u{1b}y"));
  assert.ok(out.endsWith("y\\u{a}"));
  assert.ok(!UNPRINTABLE.test(out), "nothing unprintable is left");
});

Deno.test("printable: nothing it returns can act on a terminal", () => {
  let all = "";
  for (let c = 0; c < 0x3000; c++) all += String.fromCharCode(c);
  assert.ok(!UNPRINTABLE.test(printable(all)));
  // deno-lint-ignore no-control-regex
  assert.ok(!/[\u0000-\u001f\u007f-\u009f]/.test(printable(all)));
});

Deno.test("formatBytes: whole units as whole numbers, the rest with one decimal", () => {
  assert.equal(formatBytes(0), "0 B");
  assert.equal(formatBytes(512), "512 B");
  assert.equal(formatBytes(1023), "1023 B");
  assert.equal(formatBytes(1024), "1 KiB");
  assert.equal(formatBytes(1536), "1.5 KiB");
  assert.equal(formatBytes(256 * 1024), "256 KiB");
  assert.equal(formatBytes(1024 * 1024), "1 MiB");
  assert.equal(formatBytes(5_000_000), "4.8 MiB");
  assert.equal(formatBytes(64 * 1024 * 1024), "64 MiB");
  assert.equal(formatBytes(1024 ** 3), "1 GiB");
  assert.equal(formatBytes(1.25 * 1024 ** 3), "1.25 GiB");
  assert.equal(formatBytes(84_000_000.7), "80.1 MiB", "a rate in bytes per second");
  assert.equal(formatBytes(99.6), "100 B");
});

Deno.test("printable: invisible format characters (\\p{Cf}) are shown, the zero width joiners kept", () => {
  assert.equal(printable("ad\u200Bmin"), "ad\\u{200b}min");
  assert.equal(printable("\uFEFFroot\u2060"), "\\u{feff}root\\u{2060}");
  assert.equal(printable("soft\u00ADhyphen"), "soft\\u{ad}hyphen");
  assert.equal(printable("tag\u{E0041}"), "tag\\u{e0041}");
  // Emoji sequences and scripts that need them keep their joiners.
  assert.equal(printable("👨\u200D👩\u200D👧"), "👨\u200D👩\u200D👧");
  assert.equal(printable("می\u200Cخواهم"), "می\u200Cخواهم");
});
