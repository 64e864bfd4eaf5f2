/**
 * The layout's import rules, checked (part of `deno task check`):
 *
 *     foundation  lib/wire, lib/crypto, lib/runtime, lib/net   import only foundation
 *     pki         lib/pki                                      + foundation
 *     ca          lib/ca (the trust anchor every system uses)  + pki
 *     systems     lib/blackboard, lib/bank, lib/chat           + ca; never another system
 *     trudy       lib/trudy                                    + systems, wireshark
 *     wireshark   lib/wireshark                                foundation and the systems'
 *                                                              protocol.ts tables only
 *     netlab      lib/netlab (namespaces, Trudy's nft rules)   foundation only
 *     lib/        never imports tasks/, actors/ or tests/
 *     actors/     import only lib/<folder>/mod.ts
 *
 * and no import cycle, between files or between lib's folders; and no file in lib/ or tasks/ over
 * MAX_LINES lines (a file that outgrows it is split by subject). Prints one line per violation and
 * exits 1 when there is any.
 */

import { parseCommand, PROJECT_ROOT, runMain } from "../lib/runtime/mod.ts";

export interface Violation {
  /**
   * Which rule: `cycle`, `folder-cycle`, `layer`, `system`, `wireshark`, `lib-outside`, `actor`,
   * `size`.
   */
  rule: string;
  file: string;
  detail: string;
}

/** The most lines a file in lib/ or tasks/ may have. */
export const MAX_LINES = 600;

const FOUNDATION = ["wire", "crypto", "runtime", "net"];
const SYSTEMS = ["blackboard", "bank", "chat"];
/** The lib folders each lib folder may import (besides itself). */
const ALLOWED: Record<string, readonly string[]> = {
  wire: FOUNDATION,
  crypto: FOUNDATION,
  runtime: FOUNDATION,
  net: FOUNDATION,
  pki: FOUNDATION,
  ca: [...FOUNDATION, "pki"],
  blackboard: [...FOUNDATION, "pki", "ca"],
  bank: [...FOUNDATION, "pki", "ca"],
  chat: [...FOUNDATION, "pki", "ca"],
  trudy: [...FOUNDATION, "pki", "ca", ...SYSTEMS, "wireshark"],
  wireshark: [...FOUNDATION, "ca", ...SYSTEMS],
  // The network of namespaces: iproute2 and nft commands, over the process runner only.
  netlab: FOUNDATION,
};

const SPECIFIER =
  /(?:^|[\s;}])(?:import|export)\s+(?:type\s+)?(?:[^"';]*?\s+from\s+)?["']([^"']+)["']|import\(\s*["']([^"']+)["']\s*\)/g;

/** The relative specifiers a module imports or re-exports, statically or dynamically. */
export function importsOf(source: string): string[] {
  const code = source.replace(/\/\*[\s\S]*?\*\//g, "").replace(/^\s*\/\/.*$/gm, "");
  const out: string[] = [];
  for (const m of code.matchAll(SPECIFIER)) {
    const spec = m[1] ?? m[2];
    if (spec && (spec.startsWith("./") || spec.startsWith("../"))) out.push(spec);
  }
  return out;
}

function normalise(path: string): string {
  const parts: string[] = [];
  for (const part of path.split("/")) {
    if (part === "" || part === ".") continue;
    if (part === "..") parts.pop();
    else parts.push(part);
  }
  return parts.join("/");
}

function resolve(from: string, spec: string): string {
  const dir = from.includes("/") ? from.slice(0, from.lastIndexOf("/")) : "";
  return normalise(`${dir}/${spec}`);
}

async function listTs(root: string, dir: string, out: string[]): Promise<void> {
  let entries;
  try {
    entries = Deno.readDir(`${root}/${dir}`);
  } catch {
    return;
  }
  try {
    for await (const e of entries) {
      const rel = `${dir}/${e.name}`;
      if (e.isDirectory) await listTs(root, rel, out);
      else if (e.isFile && e.name.endsWith(".ts")) out.push(rel);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
}

/** Checks the tree under `root` (a project folder); returns every violation. */
export async function checkImports(root: string): Promise<Violation[]> {
  const files: string[] = [];
  for (const top of ["lib", "actors", "tasks", "tests"]) await listTs(root, top, files);
  files.sort();
  const graph = new Map<string, string[]>();
  const violations: Violation[] = [];
  for (const file of files) {
    const source = await Deno.readTextFile(`${root}/${file}`);
    const lines = source.split("\n").length - (source.endsWith("\n") ? 1 : 0);
    if ((file.startsWith("lib/") || file.startsWith("tasks/")) && lines > MAX_LINES) {
      violations.push({
        rule: "size",
        file,
        detail: `${lines} lines, more than ${MAX_LINES}: split it by subject`,
      });
    }
    const targets = importsOf(source).map((s) => resolve(file, s));
    graph.set(file, targets);
    for (const target of targets) violations.push(...ruleViolations(file, target));
  }
  violations.push(...cycles(graph, (f) => f, "cycle"));
  // Folder-level: lib/a → lib/b edges.
  const folders = new Map<string, string[]>();
  for (const [file, targets] of graph) {
    const from = libFolder(file);
    if (!from) continue;
    const edges = folders.get(from) ?? [];
    for (const t of targets) {
      const to = libFolder(t);
      if (to && to !== from && !edges.includes(to)) edges.push(to);
    }
    folders.set(from, edges);
  }
  violations.push(...cycles(folders, (f) => `lib/${f}`, "folder-cycle"));
  return violations;
}

function libFolder(path: string): string | undefined {
  const m = /^lib\/([^/]+)\//.exec(path);
  return m?.[1];
}

function ruleViolations(file: string, target: string): Violation[] {
  const out: Violation[] = [];
  const top = file.split("/")[0];
  const targetTop = target.split("/")[0];
  if (top === "lib" && ["tasks", "actors", "tests"].includes(targetTop ?? "")) {
    out.push({ rule: "lib-outside", file, detail: `imports ${target}: lib/ stands alone` });
  }
  if (top === "actors" && targetTop === "lib" && !/^lib\/[^/]+\/mod\.ts$/.test(target)) {
    out.push({
      rule: "actor",
      file,
      detail: `imports ${target}: actors import only lib/<folder>/mod.ts`,
    });
  }
  const from = libFolder(file);
  const to = libFolder(target);
  if (!from || !to || from === to) return out;
  const allowed = ALLOWED[from];
  if (allowed === undefined) {
    out.push({ rule: "layer", file, detail: `lib/${from} is not a known folder of the layout` });
    return out;
  }
  if (SYSTEMS.includes(from) && SYSTEMS.includes(to)) {
    out.push({
      rule: "system",
      file,
      detail: `imports ${target}: a system never imports another system (lib/${from} → lib/${to})`,
    });
  } else if (from === "wireshark" && SYSTEMS.concat("ca").includes(to)) {
    if (!target.endsWith("/protocol.ts")) {
      out.push({
        rule: "wireshark",
        file,
        detail: `imports ${target}: lib/wireshark reads a system's protocol.ts table only`,
      });
    }
  } else if (!allowed.includes(to)) {
    out.push({
      rule: "layer",
      file,
      detail: `imports ${target}: lib/${from} may import only ${
        allowed.map((a) => `lib/${a}`).join(", ")
      }`,
    });
  }
  return out;
}

/** Every cycle of a directed graph, each reported once (Tarjan's strongly connected components). */
function cycles(
  graph: Map<string, string[]>,
  name: (node: string) => string,
  rule: string,
): Violation[] {
  let index = 0;
  const indices = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const out: Violation[] = [];
  const visit = (v: string): void => {
    indices.set(v, index);
    low.set(v, index);
    index++;
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!graph.has(w)) continue;
      if (!indices.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, indices.get(w)!));
      }
    }
    if (low.get(v) === indices.get(v)) {
      const component: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        component.push(w);
      } while (w !== v);
      const selfLoop = (graph.get(v) ?? []).includes(v);
      if (component.length > 1 || selfLoop) {
        component.sort();
        out.push({
          rule,
          file: name(component[0]!),
          detail: `import cycle: ${component.map(name).join(" → ")} → ${name(component[0]!)}`,
        });
      }
    }
  };
  for (const v of graph.keys()) if (!indices.has(v)) visit(v);
  return out;
}

const USAGE = `Usage: deno task check:imports [--root DIR]

Checks the layout's import rules (see the top of tasks/check_imports.ts and the README's Layout
section): no import cycle, no system importing another, lib/wireshark reading only the systems'
protocol.ts, foundation folders importing no system, actors importing only lib/<folder>/mod.ts, and
lib/ importing nothing from tasks/, actors/ or tests/. Exit status 1 on any violation.

Options:
  --root DIR   the project folder to check (default: this project)
`;

async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "check:imports",
    usage: USAGE,
    options: { root: { type: "string" } },
  });
  if (!parsed) return 0;
  const root = parsed.values.root ?? PROJECT_ROOT;
  const violations = await checkImports(root);
  for (const v of violations) console.error(`${v.file}: [${v.rule}] ${v.detail}`);
  if (violations.length > 0) {
    console.error(`check:imports: ${violations.length} violation(s) of the layout's import rules`);
    return 1;
  }
  console.log("check:imports: the import rules hold");
  return 0;
}

if (import.meta.main) await runMain("check:imports", main);
