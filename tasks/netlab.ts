#!/usr/bin/env -S deno run --allow-run=ip,nft,deno,dumpcap,tshark,editcap,reordercap,python3,openssl,apt-get --allow-read=.,/etc/netns --allow-write=.,/etc/netns --allow-sys=uid --allow-env=NO_COLOR,SUDO_UID,SUDO_GID
/**
 * `deno task netlab up | down | status | run SCENARIO`: the lab on a network of Linux namespaces,
 * Trudy the router between its subnets (lib/netlab). Exit status 2, with the reason, where it
 * cannot run (not root, no network namespaces, no iproute2/nftables).
 */

import {
  MAX_STUDENTS,
  netlabDown,
  netlabStatus,
  NetlabUnavailable,
  netlabUp,
  preflight,
  topology,
} from "../lib/netlab/mod.ts";
import { dispatch, parseCommand, parsePositiveInt, runMain } from "../lib/runtime/mod.ts";
import { NETLAB_SCENARIOS, runNetlab } from "./netlab_run.ts";

const USAGE = `Usage: deno task netlab up | down | status | run SCENARIO [options]

The lab on a network of Linux network namespaces (root; iproute2 and nftables, installed with
apt-get when missing):

  clients 10.0.1.0/24   alice, chat1…chat3, student1…studentN
  servers 10.0.2.0/24   blackboard, bank, chat
  ca      10.0.3.0/24   cuhk
  trudy   the router joining them (10.0.1.1, 10.0.2.1, 10.0.3.1): every packet between subnets
          crosses her host; she captures there, and in attacks she intercepts with nft

Commands:
  up [--students N]   build the network (removes a previous one's leftovers first); N up to ${MAX_STUDENTS}
  down                remove everything the netlab made (namespaces, veths, bridges, nft tables,
                      /etc/netns/seclab-…; only what it marked), also after a crash
  status              the netlab's namespaces and their addresses
  run SCENARIO        build the network, run SCENARIO across it, remove it again:
                      ${NETLAB_SCENARIOS.join(" | ")}
                      (run 'deno task netlab run --help' for its options)

Exit status: 0 done, 1 a scenario failed, 2 the netlab cannot run here (the reason is printed).`;

async function up(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "netlab up",
    usage:
      `Usage: deno task netlab up [--students N]\n\nBuilds the network (1 to ${MAX_STUDENTS} students, default 3).`,
    options: { students: { type: "string", default: "3" } },
  });
  if (!parsed) return;
  const topo = topology(parsePositiveInt(parsed.values.students, "students", MAX_STUDENTS));
  await preflight((l) => console.error(l));
  const started = performance.now();
  const leftovers = await netlabUp(topo);
  if (leftovers.length > 0) console.error(`removed leftovers: ${leftovers.join(", ")}`);
  for (const line of await netlabStatus()) console.log(line);
  console.error(
    `netlab up: ${topo.hosts.length + 1} namespaces in ${
      ((performance.now() - started) / 1000).toFixed(1)
    } s; try 'ip netns exec seclab-alice ping -c1 cuhk'`,
  );
}

async function down(args: string[]): Promise<number | void> {
  if (
    !parseCommand(args, { name: "netlab down", usage: "Usage: deno task netlab down", options: {} })
  ) return;
  await preflight((l) => console.error(l));
  const removed = await netlabDown();
  console.log(
    removed.length === 0
      ? "netlab down: nothing to remove"
      : `netlab down: removed ${removed.join(", ")}`,
  );
}

async function status(args: string[]): Promise<number | void> {
  if (
    !parseCommand(args, {
      name: "netlab status",
      usage: "Usage: deno task netlab status",
      options: {},
    })
  ) return;
  await preflight((l) => console.error(l));
  const lines = await netlabStatus();
  console.log(lines.length === 0 ? "netlab is down" : lines.join("\n"));
}

export async function main(args: string[]): Promise<number | void> {
  try {
    return await dispatch("netlab", USAGE, { up, down, status, run: runNetlab }, args);
  } catch (err) {
    if (err instanceof NetlabUnavailable) {
      console.error(`netlab: ${err.message}`);
      return 2;
    }
    throw err;
  }
}

if (import.meta.main) await runMain("netlab", main);
