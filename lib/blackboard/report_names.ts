/**
 * Report names and where reports land: the one rule for a report's file name (Blackboard checks
 * what a student asks for; the student derives one from any local file name), and the hard links
 * that give a finished report its final name without ever overwriting one (lib/blackboard's
 * upload store).
 */

import { printable } from "../runtime/mod.ts";

/** A refusal of an upload request; the message goes to the student. */
export class UploadError extends Error {
  override name = "UploadError";
}

export const UPLOAD_ID = /^[0-9a-f]{32}$/;
/** First character: not '.' (a hidden file) and not '-' (read as an option by the tools that list reports). */
const NAME = /^[A-Za-z0-9_][A-Za-z0-9._-]{0,99}$/;

/**
 * Checks a report's file name: a plain name, no path, no leading dot or dash, at most 100
 * characters.
 */
export function checkReportName(name: string): string {
  // check: report-name tests/blackboard/protocol_test.ts tests/blackboard/upload_store_test.ts
  if (!NAME.test(name) || name.includes("..")) {
    throw new UploadError(
      `Invalid report name '${
        printable(name)
      }': use 1-100 letters, digits, '.', '_' or '-', no path, not starting with '.' or '-'`,
    );
  }
  return name;
}

/** A report name from any local file name (other characters become '_'). */
export function reportNameOf(path: string): string {
  const base = path.slice(path.lastIndexOf("/") + 1);
  let name = base.replace(/[^A-Za-z0-9._-]/g, "_").replace(/\.\.+/g, ".").slice(0, 100);
  if (name === "" || name.startsWith(".") || name.startsWith("-")) {
    name = `report${name}`.slice(0, 100);
  }
  return name;
}

/** The name in `dir` of another hard link to `path`, if it has one there. */
export async function linkedAs(path: string, dir: string): Promise<string | undefined> {
  const info = await Deno.stat(path);
  if (info.ino === null || !(info.nlink !== null && info.nlink > 1)) return undefined;
  for await (const entry of Deno.readDir(dir)) {
    if (!entry.isFile) continue;
    const other = await Deno.stat(`${dir}/${entry.name}`).catch(() => undefined);
    if (other?.ino === info.ino && other.dev === info.dev) return entry.name;
  }
  return undefined;
}

/** Hard-links `src` as `dir/name`, or `name-2`, `name-3`… when taken; never overwrites. */
export async function linkUnique(src: string, dir: string, name: string): Promise<string> {
  const dot = name.lastIndexOf(".");
  const [stem, ext] = dot > 0 ? [name.slice(0, dot), name.slice(dot)] : [name, ""];
  for (let i = 1; i < 10_000; i++) {
    const candidate = i === 1 ? name : `${stem}-${i}${ext}`;
    try {
      await Deno.link(src, `${dir}/${candidate}`);
      return candidate;
    } catch (err) {
      if (!(err instanceof Deno.errors.AlreadyExists)) throw err;
    }
  }
  throw new UploadError(`Too many reports named ${name}`);
}
