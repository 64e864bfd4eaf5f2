/**
 * The netlab's network on paper: three subnets joined by Trudy, who is their router.
 *
 *     clients 10.0.1.0/24   alice, chat1, chat2, student1…studentN
 *     servers 10.0.2.0/24   blackboard, bank, chat
 *     ca      10.0.3.0/24   cuhk (the university's CA: another organisation than the hosted services)
 *
 * Each host is a network namespace with one veth (`eth0`, its address, a default route via Trudy);
 * the veth's other end sits in Trudy's namespace on the subnet's bridge, which carries Trudy's
 * address (`.1`) on that subnet. Its namespaces are named `seclab-HOST` and each is marked as the
 * netlab's (lib/netlab/lab.ts: the first line of /etc/netns/seclab-HOST/hosts), so that `down`
 * removes them and nothing else; the bridges and veth ends live only inside these namespaces, so
 * their short names (`br-cli`, `v-alice`) cannot collide with the host's interfaces.
 */

/** The prefix of every namespace the netlab makes (and of its /etc/netns/… directory). */
export const NETLAB_PREFIX = "seclab-";
/** Trudy's nft table, in her namespace (nft names take no '-'). */
export const NFT_TABLE = "seclab_trudy";
/** The most students a /24 client subnet holds beside alice and the chat clients. */
export const MAX_STUDENTS = 200;
/** The chat clients' hosts. */
export const CHAT_CLIENTS = ["chat1", "chat2", "chat3"] as const;

export type SubnetName = "clients" | "servers" | "ca";

export interface Subnet {
  name: SubnetName;
  /** `10.0.1` */
  base: string;
  /** Trudy's bridge on it, in her namespace. */
  bridge: string;
}

export interface Host {
  /** `cuhk`, `student7`: also its name in every namespace's hosts file. */
  name: string;
  /** `seclab-cuhk` */
  netns: string;
  subnet: SubnetName;
  address: string;
  /** Trudy's end of its veth (on the subnet's bridge), in her namespace. */
  peer: string;
}

export interface Topology {
  subnets: readonly Subnet[];
  /** Every host but Trudy. */
  hosts: readonly Host[];
  trudy: { netns: string; addresses: Record<SubnetName, string> };
}

export const SUBNETS: readonly Subnet[] = [
  { name: "clients", base: "10.0.1", bridge: "br-cli" },
  { name: "servers", base: "10.0.2", bridge: "br-srv" },
  { name: "ca", base: "10.0.3", bridge: "br-ca" },
];

/** The servers (one host each) and the port each serves on by default. */
export const SERVER_HOSTS = { cuhk: 9335, blackboard: 3141, bank: 6001, chat: 8443 } as const;
export type ServerHost = keyof typeof SERVER_HOSTS;

function host(name: string, subnet: SubnetName, last: number): Host {
  const base = SUBNETS.find((s) => s.name === subnet)!.base;
  return {
    name,
    netns: `${NETLAB_PREFIX}${name}`,
    subnet,
    address: `${base}.${last}`,
    // Interface names are at most 15 bytes: `v-student200` is 12 (in Trudy's namespace only).
    peer: `v-${name}`,
  };
}

/** The network for `students` student hosts (1…MAX_STUDENTS). */
export function topology(students: number): Topology {
  if (!Number.isInteger(students) || students < 1 || students > MAX_STUDENTS) {
    throw new RangeError(
      `Bad number of students ${students}: the client subnet (a /24) holds 1 to ${MAX_STUDENTS}`,
    );
  }
  const hosts: Host[] = [
    host("cuhk", "ca", 2),
    host("blackboard", "servers", 2),
    host("bank", "servers", 3),
    host("chat", "servers", 4),
    host("alice", "clients", 10),
    ...CHAT_CLIENTS.map((name, i) => host(name, "clients", 11 + i)),
    ...Array.from({ length: students }, (_, i) => host(`student${i + 1}`, "clients", 50 + i)),
  ];
  return {
    subnets: SUBNETS,
    hosts,
    trudy: {
      netns: `${NETLAB_PREFIX}trudy`,
      addresses: { clients: "10.0.1.1", servers: "10.0.2.1", ca: "10.0.3.1" },
    },
  };
}

/** A host by name; throws a clear error for a name the network does not have. */
export function hostOf(topo: Topology, name: string): Host {
  const found = topo.hosts.find((h) => h.name === name);
  if (!found) throw new RangeError(`Unknown netlab host '${name}'`);
  return found;
}

/**
 * The hosts file every namespace sees (`ip netns exec` bind-mounts /etc/netns/NS/hosts over
 * /etc/hosts): every host by name, Trudy by hers on each subnet.
 */
export function hostsFile(topo: Topology): string {
  const lines = ["127.0.0.1 localhost"];
  for (const h of topo.hosts) lines.push(`${h.address} ${h.name}`);
  lines.push(`${topo.trudy.addresses.clients} trudy`);
  lines.push(`${topo.trudy.addresses.servers} trudy-servers`);
  lines.push(`${topo.trudy.addresses.ca} trudy-ca`);
  return lines.join("\n") + "\n";
}
