/**
 * Building and removing the netlab (root, iproute2, nftables):
 *
 *     await preflight();              // root, ip and nft, network namespaces: or NetlabUnavailable
 *     await netlabUp(topology(3));    // removes leftovers first, then builds the network
 *     await redirect({ server: "10.0.2.3", port: 6001, to: 40123 });  // Trudy intercepts
 *     await clearRedirects();
 *     await netlabDown();             // namespaces, links, nft tables, /etc/netns/nl-…: all gone
 *
 * Everything is found by its `nl-` prefix, so `down` (and `up`, which begins with it) also cleans
 * up after a run that crashed or was killed: the processes still running in a netlab namespace are
 * killed first, so no anonymous namespace outlives it.
 */

import { runCommand, toolState } from "../runtime/mod.ts";
import { hostsFile, NETLAB_PREFIX, NFT_TABLE, type Topology } from "./topology.ts";

/** Where `ip netns exec NS` finds the files it bind-mounts over /etc (our hosts file). */
export const NETNS_ETC = "/etc/netns";

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
    const env = { DEBIAN_FRONTEND: "noninteractive" };
    for (const args of [["update", "-qq"], ["install", "-y", "-qq", ...missing]]) {
      const res = await runCommand("apt-get", args, { env });
      if (res.code !== 0) {
        throw new NetlabUnavailable(
          `apt-get ${args[0]} failed: ${res.stderr.trim().split("\n").pop()}`,
        );
      }
    }
    // Deno resolved --allow-run=ip,nft when it started: programs installed since are refused.
    throw new NetlabUnavailable(
      `Installed ${missing.join(" ")}: run the command again (this process may only run the ` +
        `programs that existed when it started)`,
    );
  }
  const probe = `${NETLAB_PREFIX}probe`;
  const res = await runCommand("ip", ["netns", "add", probe]);
  if (res.code !== 0) {
    throw new NetlabUnavailable(
      `network namespaces are unavailable here ('ip netns add' failed: ${res.stderr.trim()}); ` +
        `a container needs CAP_SYS_ADMIN and CAP_NET_ADMIN (e.g. docker run --privileged)`,
    );
  }
  await runCommand("ip", ["netns", "delete", probe]);
}

/** The netlab namespaces that exist now. */
export async function netlabNamespaces(): Promise<string[]> {
  const out = await sh("ip", ["netns", "list"]);
  return out.split("\n").map((l) => l.split(" ")[0]!).filter((n) => n.startsWith(NETLAB_PREFIX));
}

/**
 * Removes everything the netlab made, whatever state it is in: the processes in its namespaces,
 * Trudy's nft table, the namespaces (and with them their veths and bridges), any `nl-` link left in
 * this namespace, and /etc/netns/nl-…. Returns what it removed, for the log.
 */
export async function netlabDown(): Promise<string[]> {
  const removed: string[] = [];
  for (const ns of await netlabNamespaces()) {
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
  const links = await sh("ip", ["-o", "link", "show"]);
  for (const m of links.matchAll(/^\d+: ([^:@\s]+)/gm)) {
    if (m[1]!.startsWith(NETLAB_PREFIX)) {
      await runCommand("ip", ["link", "delete", m[1]!]);
      removed.push(`link ${m[1]}`);
    }
  }
  const rootTables = await runCommand("nft", ["list", "tables"]);
  if (rootTables.code === 0 && rootTables.stdout.includes(`table ip ${NFT_TABLE}`)) {
    await sh("nft", ["delete", "table", "ip", NFT_TABLE]);
    removed.push(`nft table ip ${NFT_TABLE}`);
  }
  try {
    for await (const e of Deno.readDir(NETNS_ETC)) {
      if (e.name.startsWith(NETLAB_PREFIX)) {
        await Deno.remove(`${NETNS_ETC}/${e.name}`, { recursive: true });
        removed.push(`${NETNS_ETC}/${e.name}`);
      }
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  return removed;
}

/** `ip -n NS ARGS…` */
function ipIn(netns: string, ...args: string[]): Promise<string> {
  return sh("ip", ["-n", netns, ...args]);
}

/** Builds the network (after removing any leftovers); returns what `down` removed first. */
export async function netlabUp(topo: Topology): Promise<string[]> {
  const leftovers = await netlabDown();
  const trudy = topo.trudy.netns;
  await sh("ip", ["netns", "add", trudy]);
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
  const hosts = hostsFile(topo);
  // Hosts in parallel, a few at a time (each is a handful of ip commands).
  const queue = [trudy, ...topo.hosts.map((h) => h.netns)];
  const work = [...topo.hosts];
  const one = async () => {
    for (let h = work.shift(); h !== undefined; h = work.shift()) {
      await sh("ip", ["netns", "add", h.netns]);
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
  for (const ns of queue) {
    await Deno.mkdir(`${NETNS_ETC}/${ns}`, { recursive: true });
    await Deno.writeTextFile(`${NETNS_ETC}/${ns}/hosts`, hosts);
  }
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

export interface Redirect {
  /** The real server's address and port the victims dial. */
  server: string;
  port: number;
  /** Trudy's relay port in her namespace. */
  to: number;
}

/**
 * Trudy intercepts forwarded TCP connections: `table ip nl_trudy`, prerouting, each server's
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

/** Removes Trudy's nft table (no error when there is none). */
export async function clearRedirects(topo: Topology): Promise<void> {
  await runCommand("ip", [
    ...inNetns(topo.trudy.netns).slice(1),
    "nft",
    "delete",
    "table",
    "ip",
    NFT_TABLE,
  ]);
}
