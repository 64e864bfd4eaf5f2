/**
 * How `deno task demo` writes: lines folded to 100 columns, colour for PASS, FAIL and the attack
 * verdicts on a terminal (never under NO_COLOR or into a file or a pipe), and a summary that fits
 * in 100 columns; with --quiet, the summary alone (at most 40 lines).
 */

/** The widest line the demo writes. */
export const COLUMNS = 100;
/** The most lines `--quiet` writes. */
export const QUIET_LINES = 40;

/** Whether to colour: a terminal, and no NO_COLOR (https://no-color.org). */
export function useColour(
  isTerminal: boolean = Deno.stdout.isTerminal(),
  noColor: string | undefined = readNoColor(),
): boolean {
  return isTerminal && (noColor === undefined || noColor === "");
}

function readNoColor(): string | undefined {
  try {
    const allowed = Deno.permissions.querySync({ name: "env", variable: "NO_COLOR" });
    if (allowed.state !== "granted") return undefined;
    return Deno.env.get("NO_COLOR");
  } catch {
    return undefined; // no env permission: colour follows the terminal alone
  }
}

const GREEN = "\x1b[32m";
const RED = "\x1b[31m";
const BOLD = "\x1b[1m";
const RESET = "\x1b[0m";

/**
 * Colours the words that matter: PASS green, FAIL red; an attack that SUCCEEDED red (the flaw
 * worked), one that FAILED green (the defence held).
 */
export function colourise(line: string, colour: boolean): string {
  if (!colour) return line;
  return line.replace(/ATTACK SUCCEEDED|ATTACK FAILED|\bPASS\b|\bFAIL(?:ED)?\b/g, (m) => {
    if (m === "ATTACK SUCCEEDED") return `${RED}${BOLD}${m}${RESET}`;
    if (m === "ATTACK FAILED") return `${GREEN}${BOLD}${m}${RESET}`;
    if (m === "PASS") return `${GREEN}${m}${RESET}`;
    return `${RED}${BOLD}${m}${RESET}`;
  });
}

/**
 * Folds a line to `width` columns at spaces, continuing with the line's own indentation plus two
 * spaces; a word longer than the width is cut.
 */
export function fold(line: string, width = COLUMNS): string[] {
  const length = (t: string) => [...t].length;
  if (length(line) <= width) return [line];
  const indent = /^\s*/.exec(line)![0];
  const more = `${indent}  `;
  const out: string[] = [];
  let current = indent;
  // Words with the spaces after them, so that the line's own spacing is kept.
  for (const token of line.slice(indent.length).match(/\S+\s*/g) ?? []) {
    const word = token.trimEnd();
    if (length(current) + length(word) <= width || current.trim() === "") {
      current += token;
    } else {
      out.push(current.trimEnd());
      current = more + token;
    }
    // A word longer than the line is cut.
    while (length(current.trimEnd()) > width) {
      out.push([...current].slice(0, width).join(""));
      current = more + [...current].slice(width).join("");
    }
  }
  if (current.trim() !== "") out.push(current.trimEnd());
  return out;
}

/** A table with a header rule, its columns two spaces apart. */
export function table(rows: string[][]): string[] {
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => [...r[i]!].length)));
  const line = (r: string[]) =>
    r.map((c, i) => c + " ".repeat(widths[i]! - [...c].length)).join("  ").trimEnd();
  return [line(rows[0]!), widths.map((w) => "-".repeat(w)).join("  "), ...rows.slice(1).map(line)];
}

/** One run, as the summary needs it. */
export interface SummaryRun {
  /** "1", "2", "3" or "Trudy". */
  system: string;
  scenario: string;
  error?: string;
  checks: { ok: boolean; what: string }[];
  notes: readonly string[];
  seconds: number;
}

/** `seed SUCCEEDED, default FAILED` from an attack scenario's verdict notes. */
export function verdicts(notes: readonly string[]): string {
  const counts = new Map<string, number>();
  for (const n of notes) {
    const m = /^(seed|default): ATTACK (SUCCEEDED|FAILED)/.exec(n);
    if (m) counts.set(`${m[1]} ${m[2]}`, (counts.get(`${m[1]} ${m[2]}`) ?? 0) + 1);
  }
  return [...counts].map(([v, n]) => (n > 1 ? `${v} ×${n}` : v)).join(", ");
}

/**
 * The summary: a table (one row per run, within 100 columns), every failed check (passed ones
 * are counted), where the captures are, and the last line. The same in both modes; with --quiet
 * it is all the demo prints.
 */
export function summaryLines(runs: SummaryRun[], captures: string | undefined): string[] {
  const rows = [["system", "scenario", "ran", "checks", "verdicts", "time"]];
  for (const r of runs) {
    const passed = r.checks.filter((c) => c.ok).length;
    rows.push([
      r.system,
      r.scenario,
      r.error ? "FAILED" : "yes",
      r.checks.length > 0 ? `${passed}/${r.checks.length} passed` : "(no capture)",
      verdicts(r.notes),
      `${r.seconds.toFixed(1)} s`,
    ]);
  }
  const lines = ["━━━ Summary ━━━", ...table(rows)];
  const failedChecks = runs.flatMap((r) =>
    r.checks.filter((c) => !c.ok).map((c) => `  FAIL  ${r.scenario}: ${c.what}`)
  );
  const failedRuns = runs.filter((r) => r.error).map((r) => `  FAIL  ${r.scenario}: ${r.error}`);
  const failures = [...failedRuns, ...failedChecks];
  if (failures.length > 0) {
    // At most 10 here (the full list is above, without --quiet).
    lines.push("", "Failed:", ...failures.slice(0, 10));
    if (failures.length > 10) lines.push(`  … and ${failures.length - 10} more`);
  }
  if (captures) lines.push("", captures);
  const checks = runs.flatMap((r) => r.checks);
  const failed = runs.filter((r) => r.error || r.checks.some((c) => !c.ok));
  lines.push(
    "",
    failed.length === 0
      ? `All ${runs.length} runs completed${
        checks.length > 0 ? `, all ${checks.length} checks passed` : ""
      }`
      : `FAILED: ${failed.map((r) => r.scenario).join(", ")}`,
  );
  return lines.flatMap((l) => fold(l));
}
