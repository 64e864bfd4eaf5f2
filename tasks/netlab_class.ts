/**
 * `netlab run class --students N`: a class at once on the netlab. The CA in cuhk, Blackboard and
 * Bob in theirs; the instructor issues N enrolment codes; then every student host at once (each in
 * its own namespace, its own address: the 20/s handshake gate is per address) enrols, sends a
 * message, uploads a report and banks, while Alice enrols and banks too. Prints the wall time and
 * each step's p50/p99; checks N certificates, N stored reports with the right SHA-256, and the
 * bank's money conserved (every balance what its deposits minus withdrawals make, and the total).
 */

import { Accounts } from "../lib/bank/mod.ts";
import { sha256, toHex } from "../lib/crypto/mod.ts";
import { netlabDown, netlabUp, type Topology } from "../lib/netlab/mod.ts";
import { errorMessage, percentile, PROJECT_ROOT, stderrSink } from "../lib/runtime/mod.ts";
import { Actors, type Context } from "./scenarios/harness.ts";
import { netlabPlacement } from "./scenarios/placement.ts";
import {
  ALICE_SID,
  issueServer,
  serveBlackboard,
  serveBob,
  startCa,
  writeReport,
} from "./scenarios/steps.ts";

const STEPS = ["code", "enrol", "message", "upload", "bank"] as const;
type Step = typeof STEPS[number];
/** Each student's report: distinct, this size. */
const REPORT_BYTES = 64 * 1024;
/** What each customer does at the bank: cents in, cents out. */
const DEPOSIT = 10_000;
const WITHDRAW = 1_234;
const cents = (c: number) => (c / 100).toFixed(2);

/** The i-th student's ID (1-based): 1155100001 … */
export function classSid(i: number): string {
  return `1155${String(100_000 + i)}`;
}

/** A file's SHA-256, in hex. */
async function fileHash(path: string): Promise<string> {
  return toHex(await sha256(await Deno.readFile(path)));
}

/** At most `n` at once: each `run` waits for a free slot. */
export class Slots {
  #free: number;
  readonly #waiting: Array<() => void> = [];

  constructor(n: number) {
    this.#free = n;
  }

  async run<T>(work: () => Promise<T>): Promise<T> {
    if (this.#free > 0) this.#free--;
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await work();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#free++;
    }
  }
}

export async function runClass(
  topo: Topology,
  options: { keep: boolean; quiet: boolean; parallel: number },
): Promise<number> {
  const n = topo.hosts.filter((h) => h.name.startsWith("student")).length;
  const parent = `${PROJECT_ROOT}/data/netlab`;
  await Deno.mkdir(parent, { recursive: true, mode: 0o700 });
  const dir = await Deno.realPath(await Deno.makeTempDir({ dir: parent, prefix: "class-" }));
  const sink = options.quiet ? () => {} : stderrSink;
  const place = netlabPlacement(topo);
  const times: Record<Step, number[]> = { code: [], enrol: [], message: [], upload: [], bank: [] };
  const failures: string[] = [];
  // Every host starts at once; the actor processes they start run at most `parallel` at a time.
  const slots = new Slots(options.parallel);
  const timed = <T>(step: Step, what: () => Promise<T>): Promise<T> =>
    slots.run(async () => {
      const t0 = performance.now();
      const out = await what();
      times[step].push(performance.now() - t0);
      return out;
    });
  let wall = 0;
  const checks: Array<{ what: string; ok: boolean; detail: string }> = [];
  try {
    const leftovers = await netlabUp(topo);
    if (leftovers.length > 0) console.error(`netlab: removed leftovers: ${leftovers.join(", ")}`);
    console.error(`netlab: up (${topo.hosts.length + 1} namespaces, ${n} students)`);
    await using actors = new Actors(dir, sink, place);
    const ctx: Context<"ca" | "blackboard" | "bank"> = {
      dir,
      ports: { ca: 9335, blackboard: 3141, bank: 6001 },
      place,
      actors,
      tlsEnv: {},
      sink,
      notes: [],
      checks: [],
    };
    await startCa(ctx);
    await issueServer(ctx, "blackboard", `${dir}/blackboard`);
    await issueServer(ctx, "bank", `${dir}/bank`);
    await Promise.all([
      serveBlackboard(ctx, { name: "Blackboard", port: 3141, dataDir: `${dir}/blackboard` }),
      serveBob(ctx, { name: "Bob", port: 6001, dataDir: `${dir}/bank` }),
    ]);
    const started = performance.now();
    // The instructor issues one code per student (and Alice's), one after another.
    const sids = [...Array.from({ length: n }, (_, i) => classSid(i + 1)), ALICE_SID];
    // Each code in a file of its own (0600) for --code-file: on argv, `ps` would show it host-wide.
    const codes = new Map<string, string>();
    await Deno.mkdir(`${dir}/codes`, { mode: 0o700 });
    for (const sid of sids) {
      const code = await timed(
        "code",
        () =>
          actors.run("ca code", "actors/ca.ts", ["code", "--sid", sid, "--data-dir", `${dir}/ca`]),
      );
      const file = `${dir}/codes/${sid}`;
      await Deno.writeTextFile(file, `${code.trim()}\n`, { mode: 0o600 });
      codes.set(sid, file);
    }
    console.error(
      `netlab class: ${sids.length} codes issued; ${n} students and Alice start at once`,
    );
    const customer = async (host: string, sid: string, student: boolean) => {
      const home = `${dir}/students/${sid}`;
      const name = student ? host : "Alice";
      try {
        await timed(
          "enrol",
          () =>
            actors.run(name, "actors/student.ts", [
              "enroll",
              "--sid",
              sid,
              "--code-file",
              codes.get(sid)!,
              "--ca",
              "cuhk:9335",
              "--ca-cert",
              `${dir}/ca/cuhk.cer`,
              "--home",
              home,
            ]),
        );
        if (student) {
          const common = ["--sid", sid, "--home", home, "--blackboard", "blackboard:3141"];
          await timed(
            "message",
            () =>
              actors.run(name, "actors/student.ts", [
                "send",
                ...common,
                "--message",
                `Hello from ${host}`,
              ]),
          );
          const report = `${dir}/report-${sid}.txt`;
          await writeReport(report, REPORT_BYTES - sid.length - 1);
          await Deno.writeTextFile(report, `${sid}\n`, { append: true });
          await timed(
            "upload",
            () => actors.run(name, "actors/student.ts", ["upload", ...common, "--file", report]),
          );
        }
        await timed(
          "bank",
          () =>
            actors.run(name, "actors/bank.ts", [
              "client",
              "--bank",
              "bank:6001",
              "--home",
              home,
              "deposit",
              cents(DEPOSIT),
              "withdraw",
              cents(WITHDRAW),
              "balance",
            ]),
        );
      } catch (err) {
        failures.push(`${name} (${sid}): ${errorMessage(err)}`);
      }
    };
    await Promise.all([
      ...Array.from({ length: n }, (_, i) => customer(`student${i + 1}`, classSid(i + 1), true)),
      customer("alice", ALICE_SID, false),
    ]);
    wall = (performance.now() - started) / 1000;

    // Checks on what the servers stored.
    let certs = 0;
    for (const sid of sids.slice(0, n)) {
      if (await Deno.stat(`${dir}/students/${sid}/student.cer`).then(() => true, () => false)) {
        certs++;
      }
    }
    checks.push({
      what: `${n} students hold a certificate (cert 2, verified by each student)`,
      ok: certs === n,
      detail: `${certs} of ${n}`,
    });
    let reports = 0;
    const wrong: string[] = [];
    for (const sid of sids.slice(0, n)) {
      const stored = `${dir}/blackboard/reports/${sid}/report-${sid}.txt`;
      const have = await fileHash(stored).catch(() => undefined);
      if (have === undefined) continue;
      if (have === await fileHash(`${dir}/report-${sid}.txt`)) reports++;
      else wrong.push(sid);
    }
    checks.push({
      what: `Blackboard stored ${n} reports, each with the SHA-256 of the student's file`,
      ok: reports === n,
      detail: `${reports} of ${n} match${wrong.length ? `; wrong: ${wrong.join(", ")}` : ""}`,
    });
    await actors[Symbol.asyncDispose]();
    using accounts = Accounts.open(`${dir}/bank/accounts.db`);
    const balances = sids.map((sid) => accounts.balance(sid));
    const total = balances.reduce((a, b) => a + b, 0);
    const expected = sids.length * (DEPOSIT - WITHDRAW);
    checks.push({
      what: `the bank's money is conserved: ${sids.length} accounts of ${
        cents(DEPOSIT - WITHDRAW)
      } each, ${cents(expected)} in all`,
      ok: total === expected && balances.every((b) => b === DEPOSIT - WITHDRAW),
      detail: `total ${cents(total)}; ${
        balances.filter((b) => b !== DEPOSIT - WITHDRAW).length
      } account(s) off`,
    });
  } finally {
    await netlabDown();
    console.error("netlab: down");
    if (!options.keep) await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  console.log(
    `\nnetlab class: ${n} students and Alice, wall time ${wall.toFixed(1)} s ` +
      `(at most ${options.parallel} actor processes at once)`,
  );
  console.log(
    "step      count    p50 ms    p99 ms    max ms   (each a process: Deno start included)",
  );
  for (const step of STEPS) {
    const t = times[step].sort((a, b) => a - b);
    console.log(
      `${step.padEnd(8)} ${String(t.length).padStart(6)} ${
        [percentile(t, 50), percentile(t, 99), t.at(-1) ?? NaN].map((x) => x.toFixed(0).padStart(9))
          .join(" ")
      }`,
    );
  }
  for (const f of failures) console.log(`FAIL ${f}`);
  for (const c of checks) console.log(`${c.ok ? "PASS" : "FAIL"} ${c.what} (${c.detail})`);
  const ok = failures.length === 0 && checks.length === 3 && checks.every((c) => c.ok);
  console.log(ok ? "Class passed" : "Class failed");
  return ok ? 0 : 1;
}
