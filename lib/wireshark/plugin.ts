/**
 * Installing the generated dissector in Wireshark's personal Lua plugins folder, so that Wireshark
 * and tshark load it without `-X lua_script:` (`deno task dissector --install`), and removing it
 * again (`--uninstall`). The folder is the one Wireshark itself reports ("Personal Lua Plugins" in
 * `tshark -G folders`, usually `~/.local/lib/wireshark/plugins`); both steps are idempotent, and
 * neither replaces nor removes a `lab.lua` that this project did not generate.
 */

import { ensureDir, writeFileAtomic } from "../runtime/mod.ts";
import { GENERATED_MARK } from "./dissector.ts";

/** The dissector's file name in the plugins folder (the name the README always used). */
export const PLUGIN_FILE = "lab.lua";

/** The personal Lua plugins folder, relative to the home folder, on Linux and macOS. */
export const USUAL_PLUGINS_DIR = ".local/lib/wireshark/plugins";

/** The "Personal Lua Plugins" folder in `tshark -G folders`' output, or undefined. */
export function parseLuaPluginsFolder(folders: string): string | undefined {
  const line = folders.split("\n").find((l) => /^Personal Lua Plugins:/.test(l));
  const path = line?.slice(line.indexOf(":") + 1).trim();
  return path ? path : undefined;
}

/** Where Wireshark looks for personal Lua plugins, as it says itself. */
export interface PluginsFolder {
  path: string;
  /** How it was found, for the user: `tshark -G folders`, or the usual place without tshark. */
  source: string;
}

/**
 * Wireshark's personal Lua plugins folder: from `tshark -G folders`, or when tshark is not
 * installed the usual `$HOME/.local/lib/wireshark/plugins`. Throws when neither can be found.
 */
export async function personalLuaPluginsFolder(
  options: { home?: string | undefined } = {},
): Promise<PluginsFolder> {
  let out: Deno.CommandOutput;
  try {
    out = await new Deno.Command("tshark", {
      args: ["-G", "folders"],
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
    }).output();
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
    const home = options.home;
    if (!home) {
      throw new Error(
        "Cannot find Wireshark's personal Lua plugins folder: tshark is not installed and HOME " +
          "is not set (give --plugin-dir DIR)",
      );
    }
    return {
      path: `${home.replace(/\/+$/, "")}/${USUAL_PLUGINS_DIR}`,
      source: "tshark is not installed: the usual place, check Help > About Wireshark > Folders",
    };
  }
  const text = new TextDecoder().decode(out.stdout);
  const path = out.success ? parseLuaPluginsFolder(text) : undefined;
  if (!path) {
    const why = new TextDecoder().decode(out.stderr).split("\n")
      .filter((l) => l.trim() !== "" && !/Running as user "root"/.test(l)).join(" ");
    throw new Error(
      `Cannot find Wireshark's personal Lua plugins folder: 'tshark -G folders' ${
        out.success ? "lists no 'Personal Lua Plugins'" : `failed (${why || `status ${out.code}`})`
      } (give --plugin-dir DIR)`,
    );
  }
  return { path, source: "tshark -G folders" };
}

export interface InstallResult {
  /** The installed file. */
  path: string;
  /** `installed` (new), `updated` (an older copy replaced) or `unchanged` (already this one). */
  outcome: "installed" | "updated" | "unchanged";
}

async function readIfPresent(path: string): Promise<string | undefined> {
  try {
    return await Deno.readTextFile(path);
  } catch (err) {
    if (err instanceof Deno.errors.NotFound) return undefined;
    throw err;
  }
}

function notOurs(path: string): Error {
  return new Error(
    `${path} is not this lab's dissector (no '${GENERATED_MARK}' line): ` +
      "leaving it alone; move it away or give another --plugin-dir",
  );
}

/**
 * Writes `lua` as `folder/lab.lua` (mode 0644), creating the folder when needed. A `lab.lua` that
 * is not a generated dissector is refused, never replaced.
 */
export async function installDissector(folder: string, lua: string): Promise<InstallResult> {
  if (!lua.includes(GENERATED_MARK)) {
    throw new TypeError(`Refusing to install a dissector without the '${GENERATED_MARK}' line`);
  }
  const path = `${folder.replace(/\/+$/, "")}/${PLUGIN_FILE}`;
  const current = await readIfPresent(path);
  if (current === lua) return { path, outcome: "unchanged" };
  if (current !== undefined && !current.includes(GENERATED_MARK)) throw notOurs(path);
  await ensureDir(folder);
  await writeFileAtomic(path, lua, { mode: 0o644 });
  return { path, outcome: current === undefined ? "installed" : "updated" };
}

/** Removes `folder/lab.lua` when it is a generated dissector; `absent` when there is none. */
export async function uninstallDissector(
  folder: string,
): Promise<{ path: string; outcome: "removed" | "absent" }> {
  const path = `${folder.replace(/\/+$/, "")}/${PLUGIN_FILE}`;
  const current = await readIfPresent(path);
  if (current === undefined) return { path, outcome: "absent" };
  if (!current.includes(GENERATED_MARK)) throw notOurs(path);
  await Deno.remove(path);
  return { path, outcome: "removed" };
}
