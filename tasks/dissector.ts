#!/usr/bin/env -S deno run --allow-read=.,${HOME}/.local/lib/wireshark/plugins --allow-write=pcap,${HOME}/.local/lib/wireshark/plugins --allow-run=tshark --allow-env=HOME
/**
 * `deno task dissector [--check | --install | --uninstall] [--plugin-dir DIR]`: regenerates
 * pcap/lab.lua, the Wireshark dissector, from the protocol tables in lib/*_protocol.ts. With
 * --check, only says whether the file is up to date (exit 1 when it is not). With --install, also
 * copies it into Wireshark's personal Lua plugins folder; --uninstall removes it from there.
 */

import { parseCommand, runMain, UsageError, writeFileAtomic } from "../lib/runtime/mod.ts";
import {
  DISSECTOR_PATH,
  installDissector,
  LAB_DISSECTORS,
  labDissector,
  personalLuaPluginsFolder,
  type PluginsFolder,
  shellWord,
  uninstallDissector,
  USUAL_PLUGINS_DIR,
} from "../lib/wireshark/mod.ts";

const USAGE = `Usage: deno task dissector [--check | --install | --uninstall] [--plugin-dir DIR]

Generates pcap/lab.lua (the Wireshark dissector of the CUHK, Blackboard and bank protocols, and of
the chat's frames inside decrypted TLS) from the message tables in lib/*_protocol.ts and
lib/chat/protocol.ts. Commit the result.

Options:
  --check           do not write; exit 1 when pcap/lab.lua is out of date
  --install         also copy pcap/lab.lua into Wireshark's personal Lua plugins folder (the
                    "Personal Lua Plugins" of 'tshark -G folders', created if needed), so that
                    Wireshark and tshark load it with no -X option; says if it was already there
  --uninstall       remove lab.lua from that folder (and nothing else)
  --plugin-dir DIR  use DIR as the plugins folder instead of asking tshark

Permissions: the task reads the project, writes only pcap/ and $HOME/${USUAL_PLUGINS_DIR}
(the folder on Linux and macOS), runs only tshark and reads only HOME. Where Wireshark's folder is
elsewhere (Windows, or --plugin-dir), the task stops before writing and prints the 'deno run'
command with that folder allowed.

Loading twice is harmless: with the dissector installed and also given as
'-X lua_script:pcap/lab.lua', the copy loaded first (the installed one) serves and the other does
nothing.`;

/** The command to run when the task may not touch `folder`. */
function commandFor(folder: string, action: "install" | "uninstall"): string {
  const q = shellWord;
  return `deno run --allow-read=.,${q(folder)} --allow-write=pcap,${q(folder)} ` +
    `--allow-run=tshark --allow-env=HOME tasks/dissector.ts --${action} --plugin-dir ${q(folder)}`;
}

async function pluginsFolder(given: string | undefined): Promise<PluginsFolder> {
  if (given !== undefined) {
    if (given === "") throw new UsageError("--plugin-dir needs a folder");
    return {
      path: given.startsWith("/") ? given : `${Deno.cwd()}/${given}`,
      source: "--plugin-dir",
    };
  }
  const home = Deno.permissions.querySync({ name: "env", variable: "HOME" }).state === "granted"
    ? Deno.env.get("HOME")
    : undefined;
  return await personalLuaPluginsFolder({ home });
}

/** Stops with the command to run when the task's permissions do not cover `folder`. */
function checkAllowed(folder: string, action: "install" | "uninstall"): void {
  const denied = (["read", "write"] as const).filter((name) =>
    Deno.permissions.querySync({ name, path: folder }).state !== "granted"
  );
  if (denied.length > 0) {
    throw new Error(
      `Not allowed to ${denied.join(" and ")} ${folder}: the task may write only pcap/ and ` +
        `$HOME/${USUAL_PLUGINS_DIR}; run instead: ${commandFor(folder, action)}`,
    );
  }
}

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "dissector",
    usage: USAGE,
    options: {
      check: { type: "boolean", default: false },
      install: { type: "boolean", default: false },
      uninstall: { type: "boolean", default: false },
      "plugin-dir": { type: "string" },
    },
  });
  if (!parsed) return;
  const { check, install, uninstall } = parsed.values;
  const chosen = [check && "--check", install && "--install", uninstall && "--uninstall"]
    .filter(Boolean);
  if (chosen.length > 1) throw new UsageError(`${chosen.join(" and ")} do not go together`);
  if (parsed.values["plugin-dir"] !== undefined && !install && !uninstall) {
    throw new UsageError("--plugin-dir goes with --install or --uninstall");
  }

  if (uninstall) {
    const folder = await pluginsFolder(parsed.values["plugin-dir"]);
    checkAllowed(folder.path, "uninstall");
    const { path, outcome } = await uninstallDissector(folder.path);
    console.log(
      outcome === "removed"
        ? `Removed ${path} (${folder.source}); restart Wireshark or reload its Lua plugins`
        : `Not installed: no ${path} (${folder.source}); nothing to remove`,
    );
    return;
  }

  const lua = labDissector();
  const path = DISSECTOR_PATH;
  const current = await Deno.readTextFile(DISSECTOR_PATH).catch(() => undefined);
  const names = [
    ...LAB_DISSECTORS.map((d) => `${d.abbrev} (TCP ${d.port})`),
    "labchat (inside TLS)",
  ].join(", ");
  if (check) {
    if (current === lua) {
      console.log(`${path} is up to date: ${names}`);
      return 0;
    }
    console.error(`${path} is out of date: run 'deno task dissector'`);
    return 1;
  }
  // The folder is found (and the permissions checked) before anything is written.
  const folder = install ? await pluginsFolder(parsed.values["plugin-dir"]) : undefined;
  if (folder) checkAllowed(folder.path, "install");
  if (current === lua) {
    console.log(`${path} already up to date: ${names}`);
  } else {
    await writeFileAtomic(path, lua);
    console.log(`Wrote ${path}: ${names}`);
  }
  if (folder) {
    const result = await installDissector(folder.path, lua);
    const where = `${result.path} (${folder.source})`;
    console.log(
      result.outcome === "unchanged"
        ? `Already installed: ${where} is this version`
        : `${result.outcome === "installed" ? "Installed" : "Updated"} ${where}; ` +
          "restart Wireshark or reload its Lua plugins (Ctrl+Shift+L)",
    );
  }
}

if (import.meta.main) await runMain("dissector", main);
