/**
 * Building and removing the netlab (root, iproute2, nftables):
 *
 *     await preflight();              // root, ip and nft, network namespaces: or NetlabUnavailable
 *     await netlabUp(topology(3));    // removes leftovers first, then builds the network
 *     await redirect({ server: "10.0.2.3", port: 6001, to: 40123 });  // Trudy intercepts
 *     await clearRedirects();
 *     await netlabDown();             // its namespaces and /etc/netns/seclab-…: all gone
 *
 * Only what carries the netlab's mark is removed: `addMarkedNetns` writes /etc/netns/NS/hosts,
 * whose first line is NETNS_MARK, BEFORE `ip netns add NS` (a crash between leaves only that file).
 * So `down` (and `up`, which begins with it) cleans up after a run that crashed or was killed
 * (killing the processes still running in a marked namespace first, so no anonymous namespace
 * outlives it), and leaves alone anyone else's namespaces and links, whatever their names.
 */

import { aptInstall, runCommand, toolState } from "../runtime/mod.ts";
import type { Redirect } from "../net/mod.ts";
import { hostsFile, NETLAB_PREFIX, NFT_TABLE, type Topology } from "./topology.ts";

/** Where `ip netns exec NS` finds the files it bind-mounts over /etc (our hosts file). */
export const NETNS_ETC = "/etc/netns";
/**
 * The first line of /etc/netns/NS/hosts in every namespace we make: the mark `down` looks for.
 * (A file of its own there would not do: `ip netns exec` bind-mounts every file in the folder over
 * /etc/NAME, and complains about each one /etc has not.)
 */
export const NETNS_MARK =
  "# made by the secure-channel lab (deno task netlab); removed by netlab down";

/** The netlab cannot run here (not root, no namespaces, no iproute2): exit status 2. */
export class NetlabUnavailable extends Error {
  override name = "NetlabUnavailable";
}

export class NetlabError extends Error {
  override name = "NetlabError";
}

/** Runs a command; throws with its error output when it fails. */
export async function sh(
  command: string,
  args: readonly string[],
  stdin?: string,
): Promise<string> {
  let res;
  try {
    res = await runCommand(command, args, {
      timeoutMs: 30_000,
      ...(stdin !== undefined ? { stdin } : {}),
    });
  } catch (err) {
    throw new NetlabError(`Cannot run ${command}: ${err instanceof Error ? err.message : err}`);
  }
  if (res.code !== 0) {
    throw new NetlabError(
      `${command} ${args.join(" ")} failed (exit ${res.code}): ${
        res.stderr.trim() || res.stdout.trim()
      }`,
    );
  }
  return res.stdout;
}

/** `ip netns exec NS`: the prefix that runs a command inside a namespace. */
export function inNetns(netns: string): string[] {
  return ["ip", "netns", "exec", netns];
}

function uid(): number | undefined {
  try {
    return Deno.uid() ?? undefined;
  } catch {
    return undefined;
  }
}

/**
 * Says why the netlab cannot run here, or returns: root (uid 0), `ip` and `nft` (installed with
 * apt-get when missing, as root), and network namespaces (one made and removed again).
 */
export async function preflight(print: (line: string) => void = () => {}): Promise<void> {
  const id = uid();
  if (id !== 0) {
    throw new NetlabUnavailable(
      `netlab needs root: it creates network namespaces, veth pairs, bridges and nft rules, and ` +
        `this process runs as ${id === undefined ? "an unknown user" : `uid ${id}`} ` +
        `(run it as root, e.g. 'sudo deno task netlab up')`,
    );
  }
  const missing = [];
  for (const [tool, pkg] of [["ip", "iproute2"], ["nft", "nftables"]] as const) {
    if ((await toolState(tool, "-V")) !== "ok") missing.push(pkg);
  }
  if (missing.length > 0) {
    if ((await toolState("apt-get")) !== "ok") {
      throw new NetlabUnavailable(
        `netlab needs ${missing.join(" and ")} (the ip and nft commands): install them, e.g. ` +
          `'apt-get install ${missing.join(" ")}'`,
      );
    }
    print(`Installing ${missing.join(" ")} with apt-get (running as root)…`);
    const failed = await aptInstall(missing);
    if (failed !== undefined) throw new NetlabUnavailable(failed);
    // Deno resolved --allow-run=ip,nft when it started: programs installed since are refused.
    throw new NetlabUnavailable(
      `Installed ${missing.join(" ")}: run the command again (this process may only run the ` +
        `programs that existed when it started)`,
    );
  }
  const why = await whyNoNetns(NETLAB_PREFIX);
  if (why !== undefined) throw new NetlabUnavailable(why);
}

/**
 * Why network namespaces cannot be used here, or undefined when they can: one marked namespace
 * `PREFIXprobe-PID` made and removed again.
 */
export async function whyNoNetns(prefix: string): Promise<string | undefined> {
  if (Deno.build.os !== "linux") return "network namespaces are Linux only";
  const probe = `${prefix}probe-${Deno.pid}`;
  // Only the probe is removed again: whatever else is up (a running netlab) stays.
  try {
    await addMarkedNetns(probe);
  } catch (err) {
    await removeNetns(probe, new Set()).catch(() => {});
    return `network namespaces are unavailable here (${errorText(err)}); a container needs ` +
      `CAP_SYS_ADMIN and CAP_NET_ADMIN (e.g. docker run --privileged)`;
  }
  await removeNetns(probe, new Set([probe]));
  return undefined;
}

function errorText(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Whether /etc/netns/NAME carries our mark (the first line of its hosts file). */
async function marked(name: string): Promise<boolean> {
  try {
    const hosts = await Deno.readTextFile(`${NETNS_ETC}/${name}/hosts`);
    return hosts.split("\n", 1)[0] === NETNS_MARK;
  } catch (err) {
    if (err instanceof Deno.errors.NotFound || err instanceof Deno.errors.NotADirectory) {
      return false;
    }
    throw err;
  }
}

/**
 * Makes namespace `name`, marked as ours: /etc/netns/NAME/hosts (NETNS_MARK, then `hosts`) first,
 * then `ip netns add`.
 */
export async function addMarkedNetns(name: string, hosts = "127.0.0.1 localhost\n"): Promise<void> {
  await Deno.mkdir(`${NETNS_ETC}/${name}`, { recursive: true });
  await Deno.writeTextFile(`${NETNS_ETC}/${name}/hosts`, `${NETNS_MARK}\n${hosts}`);
  await sh("ip", ["netns", "add", name]);
}

/** The namespaces that exist now. */
async function namespaces(): Promise<Set<string>> {
  const out = await sh("ip", ["netns", "list"]);
  return new Set(out.split("\n").map((l) => l.split(" ")[0]!).filter((n) => n !== ""));
}

/** The marked folders /etc/netns/PREFIX… (their namespaces may be gone). */
async function markedNames(prefix: string): Promise<string[]> {
  const names: string[] = [];
  try {
    for await (const e of Deno.readDir(NETNS_ETC)) {
      if (e.isDirectory && e.name.startsWith(prefix) && await marked(e.name)) names.push(e.name);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return names.sort();
}

/**
 * Removes every marked namespace whose name starts with `prefix`, whatever state it is in: the
 * processes still running in it (killed), Trudy's nft table, the namespace (and with it its veths
 * and bridges), and its /etc/netns folder (also when the namespace is gone already). Unmarked
 * namespaces, links and folders are left alone. Returns what it removed, for the log.
 */
export async function removeMarkedNetns(prefix: string): Promise<string[]> {
  const removed: string[] = [];
  const existing = await namespaces();
  for (const ns of await markedNames(prefix)) removed.push(...await removeNetns(ns, existing));
  return removed;
}

/** Removes one marked namespace (see removeMarkedNetns) and its folder; what it removed. */
async function removeNetns(ns: string, existing: Set<string>): Promise<string[]> {
  const removed: string[] = [];
  if (existing.has(ns)) {
    // Processes still running in it (a crashed run's actors) would keep it alive, unnamed.
    const pids = (await runCommand("ip", ["netns", "pids", ns])).stdout.split("\n")
      .map((l) => Number(l.trim())).filter((p) => Number.isInteger(p) && p > 0);
    if (pids.length > 0) {
      // The shell's kill (Deno.kill would need --allow-run for everything).
      await runCommand("ip", [...inNetns(ns).slice(1), "sh", "-c", `kill -9 ${pids.join(" ")}`]);
      removed.push(...pids.map((pid) => `process ${pid} in ${ns}`));
    }
    const tables = await runCommand("ip", [...inNetns(ns).slice(1), "nft", "list", "tables"]);
    if (tables.code === 0 && tables.stdout.includes(`table ip ${NFT_TABLE}`)) {
      await sh("ip", [...inNetns(ns).slice(1), "nft", "delete", "table", "ip", NFT_TABLE]);
      removed.push(`nft table ip ${NFT_TABLE} in ${ns}`);
    }
    await sh("ip", ["netns", "delete", ns]);
    removed.push(`namespace ${ns}`);
  }
  await Deno.remove(`${NETNS_ETC}/${ns}`, { recursive: true });
  removed.push(`${NETNS_ETC}/${ns}`);
  return removed;
}

/** The netlab's namespaces that exist now (marked, named `seclab-…`). */
export async function netlabNamespaces(): Promise<string[]> {
  const existing = await namespaces();
  return (await markedNames(NETLAB_PREFIX)).filter((n) => existing.has(n));
}

/** Removes everything the netlab made (removeMarkedNetns with its prefix), also after a crash. */
export function netlabDown(): Promise<string[]> {
  return removeMarkedNetns(NETLAB_PREFIX);
}

/** `ip -n NS ARGS…` */
function ipIn(netns: string, ...args: string[]): Promise<string> {
  return sh("ip", ["-n", netns, ...args]);
}

/** Builds the network (after removing any leftovers); returns what `down` removed first. */
export async function netlabUp(topo: Topology): Promise<string[]> {
  const leftovers = await netlabDown();
  const trudy = topo.trudy.netns;
  const hosts = hostsFile(topo);
  await addMarkedNetns(trudy, hosts);
  await ipIn(trudy, "link", "set", "lo", "up");
  for (const subnet of topo.subnets) {
    await ipIn(trudy, "link", "add", subnet.bridge, "type", "bridge");
    await ipIn(
      trudy,
      "addr",
      "add",
      `${topo.trudy.addresses[subnet.name]}/24`,
      "dev",
      subnet.bridge,
    );
    await ipIn(trudy, "link", "set", subnet.bridge, "up");
  }
  // Trudy is the router: she forwards between her bridges. Her bridges are plain switches: where
  // br_netfilter is loaded, bridged frames would pass her IP hooks at the bridge, before a capture
  // on the bridge sees them (the victims' packets would show her address, not the server's).
  await sh("ip", [
    ...inNetns(trudy).slice(1),
    "sh",
    "-c",
    "echo 1 > /proc/sys/net/ipv4/ip_forward; f=/proc/sys/net/bridge/bridge-nf-call-iptables; " +
    "if [ -e $f ]; then echo 0 > $f; fi",
  ]);
  // Hosts in parallel, a few at a time (each is a handful of ip commands).
  const work = [...topo.hosts];
  const one = async () => {
    for (let h = work.shift(); h !== undefined; h = work.shift()) {
      await addMarkedNetns(h.netns, hosts);
      // Both ends made in place: no veth ever lingers in this namespace if we are killed.
      await sh("ip", [
        "link",
        "add",
        "eth0",
        "netns",
        h.netns,
        "type",
        "veth",
        "peer",
        "name",
        h.peer,
        "netns",
        trudy,
      ]);
      await ipIn(
        trudy,
        "link",
        "set",
        h.peer,
        "master",
        topo.subnets.find((s) => s.name === h.subnet)!.bridge,
      );
      await ipIn(trudy, "link", "set", h.peer, "up");
      await ipIn(h.netns, "link", "set", "lo", "up");
      await ipIn(h.netns, "addr", "add", `${h.address}/24`, "dev", "eth0");
      await ipIn(h.netns, "link", "set", "eth0", "up");
      await ipIn(h.netns, "route", "add", "default", "via", topo.trudy.addresses[h.subnet]);
    }
  };
  await Promise.all(Array.from({ length: 4 }, one));
  return leftovers;
}

/** One line per namespace: its addresses (what `netlab status` prints). */
export async function netlabStatus(): Promise<string[]> {
  const lines: string[] = [];
  for (const ns of (await netlabNamespaces()).sort()) {
    const out = await sh("ip", ["-n", ns, "-o", "-4", "addr", "show"]);
    const addrs = [...out.matchAll(/^\d+: (\S+)\s+inet (\S+)/gm)]
      .filter((m) => m[1] !== "lo").map((m) => `${m[1]} ${m[2]}`);
    lines.push(`${ns.padEnd(16)} ${addrs.join(", ")}`);
  }
  return lines;
}

/**
 * Trudy intercepts forwarded TCP connections: `table ip seclab_trudy`, prerouting, each server's
 * `ip daddr A tcp dport P redirect to :R` (her relay answers in the server's name; her own
 * connection to the real server leaves through `output`, untouched).
 */
export async function redirect(topo: Topology, rules: readonly Redirect[]): Promise<void> {
  const lines = rules.map((r) =>
    `    ip daddr ${r.server} tcp dport ${r.port} redirect to :${r.to}`
  );
  // Declared, deleted, then made again in one transaction: the rules replace any earlier ones.
  const ruleset = `table ip ${NFT_TABLE}
delete table ip ${NFT_TABLE}
table ip ${NFT_TABLE} {
  chain prerouting {
    type nat hook prerouting priority dstnat; policy accept;
${lines.join("\n")}
  }
}
`;
  await sh("ip", [...inNetns(topo.trudy.netns).slice(1), "nft", "-f", "-"], ruleset);
}

/** Removes Trudy's nft table (no error when there is none; any other failure throws). */
export async function clearRedirects(topo: Topology): Promise<void> {
  const res = await runCommand("ip", [
    ...inNetns(topo.trudy.netns).slice(1),
    "nft",
    "delete",
    "table",
    "ip",
    NFT_TABLE,
  ]);
  if (res.code !== 0 && !/No such file or directory|does not exist/i.test(res.stderr)) {
    throw new NetlabError(
      `Cannot remove Trudy's nft table ${NFT_TABLE} (exit ${res.code}): ${res.stderr.trim()}`,
    );
  }
}
