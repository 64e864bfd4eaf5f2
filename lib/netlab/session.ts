/**
 * What a netlab run does around its work: tear the netlab down on Ctrl-C or SIGTERM, and, run
 * with sudo, give what it wrote back to the user who ran sudo.
 *
 *     using _signals = tearDownOnSignal();
 *     const owner = sudoUser();                     // SUDO_UID/SUDO_GID, or undefined
 *     const made = await missingPaths(["data", "data/netlab"]);
 *     …
 *     if (owner) await giveBack(owner, made, ["data/netlab"]);
 */

import { netlabDown } from "./lab.ts";

const SIGNALS = [["SIGINT", 130], ["SIGTERM", 143]] as const;

/**
 * Until disposed: SIGINT or SIGTERM removes the netlab (netlabDown, which also kills the actors
 * in its namespaces), then exits (130, 143).
 */
export function tearDownOnSignal(
  print: (line: string) => void = (l) => console.error(l),
): Disposable {
  let stopping = false;
  const handlers = SIGNALS.map(([signal, status]) => {
    const handler = () => {
      if (stopping) return;
      stopping = true;
      print(`netlab: ${signal}: removing the netlab`);
      netlabDown()
        .then(() => print("netlab: down"))
        .catch((err) => print(`netlab: down failed: ${err instanceof Error ? err.message : err}`))
        .finally(() => Deno.exit(status));
    };
    Deno.addSignalListener(signal, handler);
    return [signal, handler] as const;
  });
  return {
    [Symbol.dispose]() {
      for (const [signal, handler] of handlers) Deno.removeSignalListener(signal, handler);
    },
  };
}

export interface Owner {
  uid: number;
  gid: number;
}

/** The user who ran sudo (SUDO_UID, SUDO_GID), or undefined when not run with sudo. */
export function sudoUser(): Owner | undefined {
  const uid = Deno.env.get("SUDO_UID");
  const gid = Deno.env.get("SUDO_GID");
  if (uid === undefined || gid === undefined) return undefined;
  const [u, g] = [uid, gid].map((v) => /^\d+$/.test(v) ? Number(v) : NaN);
  if (!Number.isSafeInteger(u) || !Number.isSafeInteger(g)) {
    throw new Error(`Bad SUDO_UID/SUDO_GID '${uid}'/'${gid}': expected numbers`);
  }
  return { uid: u!, gid: g! };
}

/** Those of `paths` that do not exist now (so that the run makes them). */
export async function missingPaths(paths: readonly string[]): Promise<string[]> {
  const missing: string[] = [];
  for (const path of paths) {
    try {
      await Deno.lstat(path);
    } catch (err) {
      if (!(err instanceof Deno.errors.NotFound)) throw err;
      missing.push(path);
    }
  }
  return missing;
}

/**
 * Gives `made` (folders the run created, themselves only) and everything in `trees` (the run's
 * own folders, all through) to `owner`. Symbolic links are left as they are; missing paths skipped.
 */
export async function giveBack(
  owner: Owner,
  made: readonly string[],
  trees: readonly string[],
): Promise<void> {
  const chown = async (path: string, deep: boolean) => {
    let info;
    try {
      info = await Deno.lstat(path);
    } catch (err) {
      if (err instanceof Deno.errors.NotFound) return;
      throw err;
    }
    if (info.isSymlink) return;
    await Deno.chown(path, owner.uid, owner.gid);
    if (deep && info.isDirectory) {
      for await (const e of Deno.readDir(path)) await chown(`${path}/${e.name}`, true);
    }
  };
  for (const path of made) await chown(path, false);
  for (const path of trees) await chown(path, true);
}
