/**
 * `deno task netlab`, run as the task runs it (its deno.json permissions): up then down leaves the
 * machine as it was (namespaces, links, nft rulesets, /etc/netns); a run killed mid-way (SIGKILL) is
 * cleaned up by the next `up`; as an unprivileged user the task says why and exits 2; and across
 * the namespaces, a scenario end to end and an attack against seed mode and the default, Trudy the
 * router. Skipped, with the reason printed, where there is no root or no network namespaces.
 */

import assert from "node:assert/strict";
import { NETNS_MARK, whyNoNetns } from "../../lib/netlab/mod.ts";
import { runCommand, spawnDeno, waitFor } from "../../lib/runtime/mod.ts";
import { streamsAnsweredInPlace } from "../../lib/wireshark/mod.ts";
import { taskPermissions } from "../_fixtures/helpers.ts";

/** Why the netlab cannot be tested here, or undefined when it can. */
async function unavailable(): Promise<string | undefined> {
  const id = await runCommand("id", ["-u"]).catch(() => undefined);
  if (id?.stdout.trim() !== "0") return "not root";
  for (const tool of ["ip", "nft"]) {
    const found = await runCommand("sh", ["-c", `command -v ${tool}`]).catch(() => undefined);
    if (found?.code !== 0) return `no ${tool} (apt-get install iproute2 nftables)`;
  }
  return await whyNoNetns("seclab-test-");
}

const why = await unavailable();
if (why) console.error(`tests/netlab: skipped (${why})`);
const ignore = why !== undefined;
const PERMISSIONS = await taskPermissions("netlab");

function netlab(args: string[], env: Record<string, string> = {}) {
  return spawnDeno("tasks/netlab.ts", args, {
    permissions: PERMISSIONS,
    env: { NO_COLOR: "1", ...env },
  });
}

async function netlabOk(args: string[], timeoutMs = 120_000): Promise<string> {
  const res = await netlab(args).result(timeoutMs);
  assert.equal(res.code, 0, `netlab ${args.join(" ")} failed: ${res.stderr}`);
  return res.stdout + res.stderr;
}

/** `netlab down`, whatever happened before (a failed test leaves nothing for the next). */
async function netlabDownQuietly(): Promise<void> {
  await netlab(["down"]).result(60_000);
}

/** What the netlab may touch, as text: namespaces, links, nft rulesets, /etc/netns. */
interface Snapshot {
  namespaces: string;
  links: string;
  nft: string;
  etc: string;
}

async function snapshot(): Promise<Snapshot> {
  const out = async (cmd: string, args: string[]) => (await runCommand(cmd, args)).stdout;
  const links = (await out("ip", ["-o", "link", "show"])).split("\n")
    .map((l) => /^\d+: ([^:@\s]+)/.exec(l)?.[1]).filter((n) => n !== undefined).sort();
  let etc: string[] = [];
  try {
    etc = [...Deno.readDirSync("/etc/netns")].map((e) => e.name).sort();
  } catch {
    // No /etc/netns: nothing there.
  }
  return {
    namespaces: (await out("ip", ["netns", "list"])).split("\n").sort().join("\n"),
    links: links.join("\n"),
    nft: await out("nft", ["list", "ruleset"]),
    etc: etc.join("\n"),
  };
}

Deno.test({
  name: "netlab: up builds the network (routed through trudy), down leaves the machine as it was",
  ignore,
  async fn() {
    const before = await snapshot();
    await netlabOk(["up", "--students", "2"]);
    // status (its preflight probes namespaces) leaves the network as it is.
    assert.match(await netlabOk(["status"]), /seclab-student2 +eth0 10\.0\.1\.51\/24/);
    const during = await snapshot();
    assert.match(during.namespaces, /seclab-trudy/);
    assert.match(during.namespaces, /seclab-student2/);
    assert.match(during.etc, /seclab-cuhk/);
    // A real route across Trudy: alice (clients) reaches cuhk (ca) by name, one hop on the way.
    const ping = await runCommand("ip", [
      "netns",
      "exec",
      "seclab-alice",
      "ping",
      "-c1",
      "-W2",
      "cuhk",
    ]);
    assert.equal(ping.code, 0, ping.stdout + ping.stderr);
    assert.match(ping.stdout, /from cuhk \(10\.0\.3\.2\): icmp_seq=1 ttl=63/);
    await netlabOk(["down"]);
    assert.deepEqual(await snapshot(), before);
  },
});

Deno.test({
  name:
    "netlab: up and down remove a crashed run's namespaces and marks, and leave anyone else's namespaces and links alone (old prefix nl-, even ours unmarked)",
  ignore,
  async fn() {
    const foreignNs = ["nl-foreign-test", "seclab-foreign-test"];
    const ghost = "/etc/netns/seclab-ghost";
    try {
      for (const ns of foreignNs) {
        assert.equal((await runCommand("ip", ["netns", "add", ns])).code, 0);
      }
      const link = await runCommand("ip", ["link", "add", "nl-foreign0", "type", "bridge"]);
      assert.equal(link.code, 0, link.stderr);
      const before = await snapshot();
      // A crashed run: its namespaces (up, never down), and a mark whose namespace is gone.
      await netlabOk(["up", "--students", "1"]);
      await Deno.mkdir(ghost, { recursive: true });
      await Deno.writeTextFile(`${ghost}/hosts`, `${NETNS_MARK}\n127.0.0.1 localhost\n`);
      const again = await netlabOk(["up", "--students", "1"]);
      assert.match(again, /removed leftovers: .*namespace seclab-trudy/);
      assert.match(again, /\/etc\/netns\/seclab-ghost/);
      const down = await netlabOk(["down"]);
      assert.match(down, /namespace seclab-alice/);
      assert.doesNotMatch(down, /foreign/);
      const after = await snapshot();
      assert.deepEqual(after, before);
      assert.match(after.namespaces, /^nl-foreign-test/m);
      assert.match(after.namespaces, /^seclab-foreign-test/m);
      assert.match(after.links, /^nl-foreign0$/m);
    } finally {
      for (const ns of foreignNs) await runCommand("ip", ["netns", "delete", ns]);
      await runCommand("ip", ["link", "delete", "nl-foreign0"]);
      await Deno.remove(ghost, { recursive: true }).catch(() => {});
      await netlabDownQuietly();
    }
  },
});

Deno.test({
  name: "netlab: an unprivileged user is told why, exit status 2",
  ignore: ignore || (await runCommand("sh", ["-c", "command -v setpriv"])).code !== 0,
  async fn() {
    const home = await Deno.makeTempDir({ prefix: "nl-nobody-" });
    try {
      await Deno.chmod(home, 0o777);
      const deno = Deno.execPath();
      const res = await runCommand("setpriv", [
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "env",
        `DENO_DIR=${home}`,
        `HOME=${home}`,
        deno,
        "run",
        "--quiet",
        ...PERMISSIONS,
        "tasks/netlab.ts",
        "up",
      ], { timeoutMs: 60_000 });
      assert.equal(res.code, 2, res.stderr);
      assert.match(res.stderr, /netlab needs root: .* runs as uid 65534/);
      assert.equal((await snapshot()).namespaces.includes("seclab-"), false);
    } finally {
      await Deno.remove(home, { recursive: true });
    }
  },
});

/** Whether dumpcap, tshark, editcap and reordercap are there (`netlab run` captures). */
async function captureTools(): Promise<boolean> {
  for (const tool of ["dumpcap", "tshark", "editcap", "reordercap"]) {
    if ((await runCommand("sh", ["-c", `command -v ${tool}`])).code !== 0) return false;
  }
  return true;
}
const noCapture = !ignore && !(await captureTools());
if (noCapture) console.error("tests/netlab: the runs skipped (no dumpcap/tshark: deno task setup)");

Deno.test({
  name:
    "netlab: a run killed mid-way (SIGKILL) leaves namespaces and processes; the next up removes them",
  ignore: ignore || noCapture,
  async fn() {
    const before = await snapshot();
    await using _down = { [Symbol.asyncDispose]: () => netlabDownQuietly() };
    const run = netlab(["run", "upload"]);
    await run.waitFor(/listening on 10\.0\.3\.2:9335/, 120_000);
    run.kill("SIGKILL");
    await run.status;
    const crashed = await snapshot();
    assert.match(crashed.namespaces, /seclab-cuhk/);
    // The crashed run's processes in its namespaces (its actors, dumpcap in trudy's).
    const orphans: number[] = [];
    for (const ns of crashed.namespaces.split("\n").map((l) => l.split(" ")[0]!)) {
      if (!ns.startsWith("seclab-")) continue;
      const out = (await runCommand("ip", ["netns", "pids", ns])).stdout;
      orphans.push(...out.split("\n").filter((l) => l.trim() !== "").map(Number));
    }
    const up = await netlabOk(["up", "--students", "1"]);
    assert.match(up, /removed leftovers: .*namespace seclab-cuhk/);
    // None of them outlives the next up (each one still alive was killed by it); a killed orphan
    // may linger as a zombie until init reaps it, which runs nothing.
    assert.ok(orphans.length > 0, "the crashed run left no process behind to clean up");
    await waitFor(async () => {
      for (const pid of orphans) if (await running(pid)) return false;
      return true;
    }, { what: `the crashed run's processes ${orphans.join(", ")} to end`, timeoutMs: 10_000 });
    await netlabOk(["down"]);
    assert.deepEqual(await snapshot(), before);
  },
});

/** Whether a process runs (exists and is no zombie): its state in /proc, read with cat. */
async function running(pid: number): Promise<boolean> {
  const stat = await runCommand("cat", [`/proc/${pid}/stat`]);
  if (stat.code !== 0) return false;
  return !/^\d+ \(.*\) Z /.test(stat.stdout);
}

/** `tshark -r FILE -Y FILTER` field values, one line per packet. */
async function fields(file: string, filter: string, field: string): Promise<string[]> {
  const res = await runCommand("tshark", ["-r", file, "-Y", filter, "-T", "fields", "-e", field]);
  assert.equal(res.code, 0, res.stderr);
  return res.stdout.split("\n").filter((l) => l !== "");
}

Deno.test({
  name:
    "netlab: upload end to end across the namespaces, and bank-mitm with Trudy the router (seed falls, the default holds), captured on her interfaces",
  ignore: ignore || noCapture,
  async fn() {
    const before = await snapshot();
    await using _down = { [Symbol.asyncDispose]: () => netlabDownQuietly() };
    // As if run with sudo by uid/gid 65534: what it wrote goes back to them.
    const owner = Deno.statSync(".");
    const workBefore = (await Array.fromAsync(Deno.readDir("data/netlab")).catch(() => []))
      .map((e) => e.name);
    await using _owner = {
      [Symbol.asyncDispose]: async () => {
        for await (const e of Deno.readDir("data/netlab")) {
          if (!workBefore.includes(e.name)) {
            await Deno.remove(`data/netlab/${e.name}`, { recursive: true });
          }
        }
        await runCommand("chown", ["-R", `${owner.uid}:${owner.gid}`, "pcap/captures/netlab"]);
        await runCommand("chown", ["-R", `${owner.uid}:${owner.gid}`, "data/netlab"]);
      },
    };
    const res = await netlab(
      ["run", "upload", "attack-bank-mitm", "--diagram", "--quiet", "--keep"],
      { SUDO_UID: "65534", SUDO_GID: "65534" },
    ).result(300_000);
    assert.equal(res.code, 0, res.stdout.slice(-4000) + res.stderr.slice(-2000));
    assert.match(res.stdout, /PASS pcap\/lab\.lua names all \d+ lab messages/);
    assert.match(res.stdout, /PASS seed: Trudy's verdict ATTACK SUCCEEDED/);
    assert.match(res.stdout, /PASS default: Trudy's verdict ATTACK FAILED/);
    // The ladder by address: Alice's leg ends at Trudy, Trudy's own leg at Bob; her notes land.
    assert.match(
      res.stdout,
      /PASS the ladder shows alice 10\.0\.1\.10 ⇄ trudy 10\.0\.2\.1 ⇄ bank 10\.0\.2\.3/,
    );
    assert.match(res.stdout, /PASS the ladder marks what Trudy changed: (\d+) of \1 red notes/);
    assert.match(
      res.stdout,
      /PASS pcap\/lab\.lua names the lab messages on Trudy's connections/,
    );
    assert.match(res.stdout, /All 2 passed/);
    const upload = "pcap/captures/netlab/upload.pcapng";
    for (const path of ["pcap/captures/netlab", upload, "data/netlab"]) {
      const st = Deno.statSync(path);
      assert.deepEqual([st.uid, st.gid], [65534, 65534], `${path} is not the sudo user's`);
    }
    const kept = [...Deno.readDirSync("data/netlab")].map((e) => `data/netlab/${e.name}`);
    assert.ok(kept.length > 0, "--keep kept no work folder");
    for (const path of kept) assert.equal(Deno.statSync(path).uid, 65534, path);
    // On trudy's bridges, with real Ethernet and IP headers; never loopback.
    const ifaces = new Set(await fields(upload, "tcp", "frame.interface_name"));
    assert.deepEqual([...ifaces].sort(), ["br-ca", "br-cli", "br-srv"]);
    assert.ok((await fields(upload, "eth && ip.src == 10.0.1.50", "ip.dst")).includes("10.0.3.2"));
    // Each packet once: nothing she forwarded is kept as she sent it on (TTL 63).
    assert.deepEqual(await fields(upload, "ip.ttl != 64", "frame.number"), []);
    // Trudy on the path: Alice dialled Bob's address (10.0.2.3), and Trudy's relay, from her own
    // address on the servers' side (10.0.2.1), dialled Bob.
    const mitm = "pcap/captures/netlab/attack-bank-mitm.pcapng";
    const syns = await fields(
      mitm,
      "tcp.flags.syn == 1 && tcp.flags.ack == 0",
      "ip.src",
    );
    assert.ok(syns.includes("10.0.1.10") && syns.includes("10.0.2.1"), syns.join(" "));
    assert.deepEqual(
      new Set(await fields(mitm, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "ip.dst")),
      new Set(["10.0.2.3"]),
    );
    // The connections Trudy answered in place (SYN and SYN-ACK on one of her bridges): Alice's,
    // and her relay's own (from her address); none in the upload, which she only forwarded.
    const answered = await streamsAnsweredInPlace(mitm);
    const clientOf = async (s: number) =>
      (await fields(
        mitm,
        `tcp.stream == ${s} && tcp.flags.syn == 1 && tcp.flags.ack == 0`,
        "ip.src",
      ))[0];
    const clients = await Promise.all([...answered].map(clientOf));
    assert.deepEqual(new Set(clients), new Set(["10.0.1.10", "10.0.2.1"]));
    assert.equal(
      new Set(await fields(mitm, "tcp.flags.syn == 1 && tcp.flags.ack == 0", "tcp.stream")).size,
      answered.size,
    );
    assert.deepEqual(await streamsAnsweredInPlace(upload), new Set());
    assert.deepEqual(await snapshot(), before);
  },
});
