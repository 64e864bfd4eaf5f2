/**
 * `deno task mutate`: a small mutation runner for the lab's security checks.
 *
 * Every security or integrity check in lib/ and actors/ carries a marker comment on the line
 * before it, naming the check and the test files that must catch its removal:
 *
 *     // check: step4-signature tests/blackboard/handshake_test.ts
 *     if (!await verifySignature(...)) throw new LocalRefusal(...);
 *
 * The line after the marker must hold an `if (CONDITION)`. For each marker the runner copies the
 * project to a scratch folder under data/mutate/, replaces that condition with `false` (the check
 * switched off), runs the named tests there, and reports the mutant killed (a test failed) or
 * survived (every test passed). A marker whose next line holds no `if (` is stale: the run then
 * never reports success. The unmutated tests run first; if they fail, nothing is reported.
 */

import { denoCommand, parseCommand, runMain, UsageError } from "../lib/runtime/mod.ts";
import { PROJECT_ROOT } from "../lib/runtime/paths.ts";

export interface Marker {
  name: string;
  /** Project-relative path of the file that holds the check. */
  file: string;
  /** 1-based line of the marker comment. */
  line: number;
  /** Test files (project-relative) that must fail when the check is off. */
  tests: string[];
  /** The code line the mutation changes, or undefined when the marker is stale. */
  target?: { line: number; text: string; mutated: string };
}

export interface MutantResult {
  name: string;
  file: string;
  line: number;
  outcome: "killed" | "survived" | "stale" | "error";
  ms: number;
  detail?: string;
}

const MARKER = /^\s*\/\/\s*check:\s*([a-z0-9][a-z0-9-]*)\s*(.*)$/;

/** Replaces the condition of the first `if (…)` on `line` with `false`; undefined if none. */
export function disableCondition(line: string): string | undefined {
  const start = line.search(/\bif\s*\(/);
  if (start < 0) return undefined;
  const open = line.indexOf("(", start);
  let depth = 0;
  for (let i = open; i < line.length; i++) {
    const c = line[i];
    if (c === "(") depth++;
    else if (c === ")") {
      depth--;
      if (depth === 0) return `${line.slice(0, open)}(false)${line.slice(i + 1)}`;
    }
  }
  // The condition spans several lines: close it on this one.
  return undefined;
}

/** Finds the markers in one source text. */
export function markersIn(file: string, source: string): Marker[] {
  const lines = source.split("\n");
  const out: Marker[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = MARKER.exec(lines[i]!);
    if (!m) continue;
    const tests = m[2]!.split(/[\s,]+/).filter((t) => t.length > 0);
    const marker: Marker = { name: m[1]!, file, line: i + 1, tests };
    // The next line that is not a comment or blank holds the check.
    let j = i + 1;
    while (j < lines.length && /^\s*(\/\/.*)?$/.test(lines[j]!)) j++;
    const text = lines[j];
    const mutated = text === undefined ? undefined : disableCondition(text);
    if (text !== undefined && mutated !== undefined) {
      marker.target = { line: j + 1, text, mutated };
    }
    out.push(marker);
  }
  return out;
}

async function walk(root: string, dir: string, out: string[]): Promise<void> {
  try {
    for await (const e of Deno.readDir(`${root}/${dir}`)) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) await walk(root, rel, out);
      else if (e.isFile && e.name.endsWith(".ts")) out.push(rel);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Every marker under lib/ and actors/ of `root`, sorted by file and line. */
export async function findMarkers(root: string): Promise<Marker[]> {
  const files: string[] = [];
  for (const top of ["lib", "actors"]) await walk(root, top, files);
  files.sort();
  const out: Marker[] = [];
  for (const file of files) {
    out.push(...markersIn(file, await Deno.readTextFile(`${root}/${file}`)));
  }
  return out;
}

/** Problems with the markers themselves: stale, duplicate names, no tests, missing test files. */
export async function markerProblems(root: string, markers: Marker[]): Promise<string[]> {
  const problems: string[] = [];
  const seen = new Map<string, Marker>();
  for (const m of markers) {
    const where = `${m.file}:${m.line}`;
    if (!m.target) problems.push(`${where}: marker '${m.name}' has no 'if (…)' on its next line`);
    const twin = seen.get(m.name);
    if (twin) problems.push(`${where}: marker '${m.name}' also at ${twin.file}:${twin.line}`);
    seen.set(m.name, m);
    if (m.tests.length === 0) problems.push(`${where}: marker '${m.name}' names no test file`);
    for (const t of m.tests) {
      try {
        await Deno.stat(`${root}/${t}`);
      } catch {
        problems.push(`${where}: marker '${m.name}' names a missing test file ${t}`);
      }
    }
  }
  return problems;
}

const TEST_PERMISSIONS = [
  "--allow-net=127.0.0.1,localhost,[::1]",
  "--allow-read",
  "--allow-write",
  "--allow-run",
  "--allow-env",
];

async function runTests(
  dir: string,
  tests: string[],
  timeoutMs: number,
): Promise<{ ok: boolean; output: string }> {
  // Not Deno.execPath(): the task grants `--allow-run=deno`, which names the binary on the PATH
  // (a symlink where Deno came from npm), and the resolved path is then not allowed.
  const cmd = new Deno.Command(denoCommand(), {
    args: ["test", "--quiet", "--no-check", ...TEST_PERMISSIONS, ...tests],
    cwd: dir,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
    env: { NO_COLOR: "1" },
    signal: AbortSignal.timeout(timeoutMs),
  });
  const out = await cmd.output();
  const dec = new TextDecoder();
  return { ok: out.success, output: dec.decode(out.stdout) + dec.decode(out.stderr) };
}

async function copyTree(from: string, to: string, entries: string[]): Promise<void> {
  await Deno.mkdir(to, { recursive: true });
  for (const entry of entries) {
    let info;
    try {
      info = await Deno.stat(`${from}/${entry}`);
    } catch {
      continue;
    }
    if (info.isDirectory) {
      await Deno.mkdir(`${to}/${entry}`, { recursive: true });
      const names: string[] = [];
      for await (const e of Deno.readDir(`${from}/${entry}`)) {
        if (entry === "pcap" && e.name === "captures") continue;
        names.push(`${entry}/${e.name}`);
      }
      await copyTree(from, to, names);
    } else if (info.isFile) {
      await Deno.copyFile(`${from}/${entry}`, `${to}/${entry}`);
    }
  }
}

export interface MutateOptions {
  root: string;
  only?: string[];
  timeoutMs?: number;
  log?: (line: string) => void;
}

/** Runs every (or the named) mutant; returns the results, or throws if the baseline fails. */
export async function mutate(options: MutateOptions): Promise<MutantResult[]> {
  const log = options.log ?? ((line: string) => console.log(line));
  const timeoutMs = options.timeoutMs ?? 300_000;
  let markers = await findMarkers(options.root);
  if (options.only && options.only.length > 0) {
    const unknown = options.only.filter((n) => !markers.some((m) => m.name === n));
    if (unknown.length > 0) throw new UsageError(`no marked check named ${unknown.join(", ")}`);
    markers = markers.filter((m) => options.only!.includes(m.name));
  }
  const scratch = `${options.root}/data/mutate/run-${Date.now().toString(36)}`;
  await copyTree(options.root, scratch, [
    "deno.json",
    "deno.lock",
    "lib",
    "actors",
    "tasks",
    "tests",
    "pcap",
  ]);
  const results: MutantResult[] = [];
  try {
    const allTests = [...new Set(markers.flatMap((m) => m.tests))].sort();
    log(`mutate: ${markers.length} marked checks, ${allTests.length} test files`);
    if (allTests.length > 0) {
      const started = Date.now();
      const base = await runTests(scratch, allTests, timeoutMs * 2);
      if (!base.ok) {
        throw new Error(
          `the unmutated tests fail, so no mutant can be judged:\n${base.output.slice(-3000)}`,
        );
      }
      log(`mutate: the unmutated tests pass (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }
    for (const [i, m] of markers.entries()) {
      const started = Date.now();
      const where = `${m.file}:${m.target?.line ?? m.line}`;
      if (!m.target || m.tests.length === 0) {
        results.push({ name: m.name, file: m.file, line: m.line, outcome: "stale", ms: 0 });
        log(`[${i + 1}/${markers.length}] STALE     ${m.name} (${where})`);
        continue;
      }
      const path = `${scratch}/${m.file}`;
      const original = await Deno.readTextFile(path);
      const lines = original.split("\n");
      lines[m.target.line - 1] = m.target.mutated;
      await Deno.writeTextFile(path, lines.join("\n"));
      let outcome: MutantResult["outcome"];
      let detail: string | undefined;
      try {
        const r = await runTests(scratch, m.tests, timeoutMs);
        outcome = r.ok ? "survived" : "killed";
        if (!r.ok) {
          detail = r.output.split("\n").find((l) => /FAILED|=> |error:/.test(l))?.trim();
        }
      } catch (err) {
        // A timeout counts as killed: the tests did not pass with the check off.
        outcome = err instanceof DOMException && err.name === "TimeoutError" ? "killed" : "error";
        detail = err instanceof Error ? err.message : String(err);
      } finally {
        await Deno.writeTextFile(path, original);
      }
      const ms = Date.now() - started;
      results.push({
        name: m.name,
        file: m.file,
        line: m.target.line,
        outcome,
        ms,
        ...(detail ? { detail } : {}),
      });
      log(
        `[${i + 1}/${markers.length}] ${outcome.toUpperCase().padEnd(9)} ${m.name} (${where}, ${
          (ms / 1000).toFixed(1)
        } s)`,
      );
    }
  } finally {
    await Deno.remove(scratch, { recursive: true }).catch(() => {});
  }
  return results;
}

const USAGE = `Usage: deno task mutate [--list] [--check NAME]... [--root DIR] [--json FILE]

Switches off each marked security check in turn (in a scratch copy under data/mutate/) and runs
the tests its marker names: a failing test kills the mutant, passing tests mean it survived.
Markers are comments '// check: NAME TEST_FILE...' on the line before an 'if (…)' in lib/ or
actors/. Exit status 0 only when every marker is sound and every mutant is killed.

Options:
  --list          list the marked checks and their tests, run nothing
  --check NAME    run only this check (repeatable)
  --root DIR      the project to mutate (default: this project)
  --json FILE     also write the results as JSON
  --timeout SECS  per mutant test run (default 300)
`;

async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "mutate",
    usage: USAGE,
    options: {
      list: { type: "boolean", default: false },
      check: { type: "string", multiple: true },
      root: { type: "string" },
      json: { type: "string" },
      timeout: { type: "string" },
    },
  });
  if (!parsed) return 0;
  const root = parsed.values.root ?? PROJECT_ROOT;
  const timeoutSecs = parsed.values.timeout === undefined ? 300 : Number(parsed.values.timeout);
  if (!Number.isInteger(timeoutSecs) || timeoutSecs < 1 || timeoutSecs > 3600) {
    throw new UsageError("--timeout takes whole seconds from 1 to 3600");
  }
  const markers = await findMarkers(root);
  const problems = await markerProblems(root, markers);
  if (parsed.values.list) {
    for (const m of markers) {
      console.log(`${m.name.padEnd(32)} ${m.file}:${m.line}  ${m.tests.join(" ")}`);
    }
    console.log(`${markers.length} marked checks`);
    for (const p of problems) console.error(`mutate: ${p}`);
    return problems.length > 0 ? 1 : 0;
  }
  const started = Date.now();
  const results = await mutate({
    root,
    ...(parsed.values.check ? { only: parsed.values.check } : {}),
    timeoutMs: timeoutSecs * 1000,
  });
  const killed = results.filter((r) => r.outcome === "killed").length;
  const survived = results.filter((r) => r.outcome === "survived");
  const broken = results.filter((r) => r.outcome === "stale" || r.outcome === "error");
  const minutes = ((Date.now() - started) / 60_000).toFixed(1);
  console.log(
    `mutate: ${killed} of ${results.length} mutants killed (${
      results.length === 0 ? 0 : Math.round((100 * killed) / results.length)
    }%), ${survived.length} survived, ${broken.length} stale or broken, in ${minutes} min`,
  );
  for (const r of survived) console.log(`  SURVIVED ${r.name} (${r.file}:${r.line})`);
  for (const p of problems) console.error(`mutate: ${p}`);
  if (parsed.values.json) {
    await Deno.writeTextFile(
      parsed.values.json,
      JSON.stringify({ date: new Date().toISOString(), results, problems }, null, 2) + "\n",
    );
  }
  return survived.length === 0 && broken.length === 0 && problems.length === 0 ? 0 : 1;
}

if (import.meta.main) await runMain("mutate", main);
