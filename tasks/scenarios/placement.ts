/**
 * Where a scenario's actors run and how they reach each other. On `LOOPBACK` (deno task capture)
 * every actor is a process on 127.0.0.1 and each server has its own free port; in `netlabPlacement`
 * (deno task netlab run) each actor runs in its netlab host (`ip netns exec seclab-cuhk deno run …`),
 * servers listen on their host's address, clients dial names' addresses, and Trudy, the router,
 * intercepts with nft instead of being dialled.
 */

import {
  clearRedirects,
  hostOf,
  inNetns,
  NETLAB_PREFIX,
  redirect,
  SERVER_HOSTS,
  type Topology,
} from "../../lib/netlab/mod.ts";
import type { Redirect } from "../../lib/net/mod.ts";

export interface Placement {
  /** `loopback`, `netlab` */
  kind: "loopback" | "netlab";
  /** The actors' `--allow-net` value. */
  allowNet: string;
  /** The command prefix that runs an actor (by its name: `CUHK`, `Bob (seed)`, `chat alice`). */
  wrapper(actor: string): readonly string[];
  /** The netlab host an actor runs in (`cuhk`), or undefined on loopback. */
  hostOfActor(actor: string): string | undefined;
  /** The address of the host that serves the named port (`ca`, `bankSeed`…). */
  address(portName: string): string;
  /** The named port's number when the placement fixes it (the netlab's default ports). */
  fixedPort(portName: string): number | undefined;
  /** Where Trudy listens. */
  trudyListen: string;
  /**
   * Trudy takes over connections to `server:port` (the netlab's nft redirect to her relay on
   * `to`); nothing on loopback, where the victim dials her port.
   */
  intercept(rules: Array<{ server: string; port: number; to: number }>): Promise<void>;
  /** Removes Trudy's interception rules. */
  release(): Promise<void>;
  /**
   * Every interception rule made so far, in order (a scenario reads those it made: from the count
   * before it); none on loopback.
   */
  redirects(): readonly Redirect[];
  /** Trudy's own addresses (the netlab's `10.0.x.1`); none on loopback, where she has no own. */
  trudyAddresses: readonly string[];
  /** The ladder's name for a lane (`cuhk 10.0.3.2` on the netlab). */
  lane(name: string): string;
  /** Where captures are taken (dumpcap's interfaces, its namespace, a filter ANDed to the ports'). */
  captureAt: {
    where: string;
    interfaces?: string[];
    wrapper?: string[];
    extraFilter?: string;
    sentinels?: string[];
  };
}

export const LOOPBACK: Placement = {
  kind: "loopback",
  allowNet: "127.0.0.1,localhost,[::1]",
  wrapper: () => [],
  hostOfActor: () => undefined,
  address: () => "127.0.0.1",
  fixedPort: () => undefined,
  trudyListen: "127.0.0.1",
  intercept: () => Promise.resolve(),
  release: () => Promise.resolve(),
  redirects: () => [],
  trudyAddresses: [],
  lane: (name) => name,
  captureAt: { where: "lo" },
};

/** The netlab host serving a scenario's named port: `ca`, `caOpen` → cuhk; `bbSeed` → blackboard. */
export function hostOfPort(portName: string): string {
  if (/^ca/.test(portName)) return "cuhk";
  if (/^(bb|blackboard)/.test(portName)) return "blackboard";
  if (/^bank/.test(portName)) return "bank";
  if (/^chat/.test(portName)) return "chat";
  if (/^trudy/.test(portName)) return "trudy";
  throw new RangeError(`No netlab host serves the port named '${portName}'`);
}

/** The netlab host of an actor, by the name the scenarios give it. */
export function netlabHostOf(actor: string, chatClients: Map<string, string>): string {
  if (/^(CUHK|ca )/.test(actor)) return "cuhk";
  if (/^Blackboard/.test(actor)) return "blackboard";
  if (/^Bob/.test(actor)) return "bank";
  if (actor === "chat server") return "chat";
  if (actor.startsWith("chat ") || ["python3", "openssl"].includes(actor)) {
    // Chat clients take chat1, chat2, chat3 in order of their nicknames' first appearance.
    let host = chatClients.get(actor);
    if (host === undefined) {
      host = `chat${(chatClients.size % 3) + 1}`;
      chatClients.set(actor, host);
    }
    return host;
  }
  if (/^[Ss]tudent$/.test(actor)) return "student1";
  if (/^student\d+$/.test(actor)) return actor;
  if (actor === "Alice") return "alice";
  if (actor === "Trudy") return "trudy";
  throw new RangeError(`No netlab host for the actor '${actor}'`);
}

/** Ladder lanes by their scenario name → the netlab host that plays them. */
const LANE_HOSTS: Array<[RegExp, string]> = [
  [/^CUHK/, "cuhk"],
  [/^Blackboard/, "blackboard"],
  [/^Bob/, "bank"],
  [/^chat server$/, "chat"],
  [/^Student$/, "student1"],
  [/^Alice$/, "alice"],
  [/^Trudy$/, "trudy"],
];
/** The lanes that are simply their host (others keep their name after it: a second CA's). */
const PLAIN_LANES = new Set([
  "CUHK (CA)",
  "Blackboard",
  "Bob (bank)",
  "chat server",
  "Student",
  "Alice",
  "Trudy",
]);

export function netlabPlacement(topo: Topology): Placement {
  const chatClients = new Map<string, string>();
  const made: Redirect[] = [];
  const address = (host: string) =>
    host === "trudy" ? topo.trudy.addresses.servers : hostOf(topo, host).address;
  const servers = Object.keys(SERVER_HOSTS);
  const allowNet = [
    ...servers.flatMap((h) => [h, address(h)]),
    ...Object.values(topo.trudy.addresses),
    "trudy",
    "0.0.0.0",
    "127.0.0.1",
    "localhost",
  ].join(",");
  return {
    kind: "netlab",
    allowNet,
    wrapper: (actor) => inNetns(`${NETLAB_PREFIX}${netlabHostOf(actor, chatClients)}`),
    hostOfActor: (actor) => netlabHostOf(actor, chatClients),
    address: (portName) => address(hostOfPort(portName)),
    fixedPort: (portName) =>
      (SERVER_HOSTS as Record<string, number>)[
        portName === "ca" ? "cuhk" : portName
      ],
    // Every interface of her host: nft's redirect sends a victim's connection to the address of
    // the interface it came in on (10.0.1.1 from the clients, 10.0.2.1 from the servers).
    trudyListen: "0.0.0.0",
    // Trudy's bridges: every packet between subnets crosses two of them, once as it came in
    // (TTL 64, sent by a neighbour) and once as she sent it on (TTL 63); her own packets (her
    // relays' legs) leave with TTL 64. Keeping TTL 64 keeps each packet once, as it arrived.
    captureAt: {
      where: `trudy's interfaces ${
        topo.subnets.map((s) => s.bridge).join(", ")
      } (TTL 64: each packet once)`,
      interfaces: topo.subnets.map((s) => s.bridge),
      wrapper: inNetns(topo.trudy.netns),
      extraFilter: "ip[8] = 64",
      // The capture's end sentinels, sent from her namespace, one through each bridge (TTL 64).
      sentinels: topo.subnets.map((s) => topo.hosts.find((h) => h.subnet === s.name)!.address),
    },
    intercept: async (rules) => {
      await redirect(topo, rules);
      made.push(...rules);
    },
    release: () => clearRedirects(topo),
    redirects: () => [...made],
    trudyAddresses: Object.values(topo.trudy.addresses),
    lane: (name) => {
      const host = LANE_HOSTS.find(([re]) => re.test(name))?.[1];
      if (host === undefined) return name;
      return PLAIN_LANES.has(name)
        ? `${host} ${address(host)}`
        : `${host} ${address(host)} · ${name}`;
    },
  };
}
