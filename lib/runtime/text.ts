/**
 * Text for people: peer text made safe for a terminal or a log line, and byte counts.
 */

/**
 * What `printable` escapes: C0 and C1 control characters (ESC and CSI start terminal escape
 * sequences, CR and LF forge log lines), DEL, the Unicode line and paragraph separators, and the
 * bidirectional embeddings, overrides and isolates that reorder what a reader sees (U+202A-202E,
 * U+2066-2069).
 */
export const UNPRINTABLE = /[\p{Cc}\u2028\u2029\u202A-\u202E\u2066-\u2069]/u;

/**
 * What `printable` escapes: `UNPRINTABLE`, and the other invisible format characters (\p{Cf}: zero
 * width space, word joiner, byte order mark, soft hyphen, tags…) with which a peer could make two
 * different strings look the same in a log. Zero width (non-)joiner stay: emoji sequences and
 * some scripts need them.
 */
const UNPRINTABLE_ALL = new RegExp(`${UNPRINTABLE.source}|(?![\\u200C\\u200D])\\p{Cf}`, "gu");

/**
 * Peer text made safe for one terminal line or log line: every character `UNPRINTABLE` matches,
 * and every other invisible format character (\p{Cf}) but the zero width (non-)joiner, becomes a
 * visible `\u{…}` escape (ESC becomes `\u{1b}`), so escape sequences, line breaks, bidi overrides
 * and invisible characters from a peer show as text instead of acting. Everything else is kept.
 */
export function printable(text: string): string {
  return text.replace(UNPRINTABLE_ALL, (c) => `\\u{${c.codePointAt(0)!.toString(16)}}`);
}

const UNITS = [["GiB", 1024 ** 3, 2], ["MiB", 1024 ** 2, 1], ["KiB", 1024, 1]] as const;

/**
 * A byte count in the largest binary unit it reaches: a whole number of the unit when it is one
 * (`256 KiB`, `1 GiB`), otherwise one decimal (`4.8 MiB`; two for GiB: `1.25 GiB`); below 1 KiB,
 * whole bytes (`512 B`).
 */
export function formatBytes(n: number): string {
  for (const [unit, size, digits] of UNITS) {
    if (n < size) continue;
    return n % size === 0 ? `${n / size} ${unit}` : `${(n / size).toFixed(digits)} ${unit}`;
  }
  return `${Math.round(n)} B`;
}
