/**
 * Trudy's attacks (actors/trudy.ts), each run against seed mode and then against the default, Trudy
 * on the path on a free port: both legs (victim ↔ Trudy, Trudy ↔ server) captured, her verdicts
 * and the victims' outcomes asserted. Here: what every attack shares, and enrol-impersonation (the
 * bank's and Blackboard's attacks are in attacks_bank.ts and attacks_blackboard.ts).
 */

import { caProtocol } from "../../lib/ca/mod.ts";
import type { RunningProcess } from "../../lib/runtime/mod.ts";
import type { LadderMark, LadderSection } from "../../lib/wireshark/mod.ts";
import { check, checkVerdict, type Half } from "./checks.ts";
import {
  at,
  type Context,
  hostPort,
  listenArgs,
  outcome,
  prints,
  scenario,
  serverAt,
  type Target,
  via,
} from "./harness.ts";

export const VICTIM_SID = "1155000777";

/**
 * An attack's two halves on its ladder, told apart by the servers' ports of each (Trudy's among
 * them): a band opens each.
 */
export function halves(seed: number[], def: number[]): LadderSection[] {
  return [
    { key: "seed", title: "Seed mode: the seeds' protocol, flaws included", ports: seed },
    {
      key: "default",
      title: "Default mode: the same attack against the lab's protocol",
      ports: def,
    },
  ];
}

/** The same red note on the matching arrow of both halves. */
export function bothHalves(mark: Omit<LadderMark, "section">): LadderMark[] {
  return [{ ...mark, section: "seed" }, { ...mark, section: "default" }];
}

/**
 * Starts Trudy on the path: `ATTACK --listen-port PORT --once`, after her `listening on` line. On
 * loopback the victim is sent to her port; on the netlab she is the router, and her nft rule hands
 * her the victims' connections to `intercepts` (the real server's address and port). Most attacks
 * relay to that same server, named by their `upstream` option (`--bank`, `--blackboard`, `--ca`).
 */
export async function startTrudy(
  ctx: Context,
  half: Half,
  attack: string,
  args: string[],
  port: number,
  intercepts: Target,
  /** Trudy's option that names the server she relays to: she is given `intercepts` there. */
  upstream?: string,
): Promise<RunningProcess> {
  const netlab = ctx.place.kind === "netlab";
  ctx.sink(
    netlab
      ? `* ${half} mode: Trudy (${attack}), the router, takes over connections to ${
        hostPort(intercepts)
      } (nft redirect to her port ${port})`
      : `* ${half} mode: Trudy (${attack}) waits on 127.0.0.1:${port}; the victim is sent there`,
  );
  const trudy = await ctx.actors.serve("Trudy", "actors/trudy.ts", [
    attack,
    ...(upstream ? [upstream, hostPort(intercepts)] : []),
    ...args,
    ...(netlab ? ["--listen", ctx.place.trudyListen] : []),
    "--listen-port",
    String(port),
    "--once",
  ]);
  // One rule at a time: the previous half's is replaced.
  await ctx.place.intercept([{ server: intercepts.host, port: intercepts.port, to: port }]);
  return trudy;
}

/** The enrolment attacks' two CAs: the seeds' open enrolment (`--protocol seed`) and the default. */
function startBothCas(ctx: Context<"caOpen" | "ca">): Promise<[RunningProcess, RunningProcess]> {
  return Promise.all([
    ctx.actors.serve("CUHK (open)", "actors/ca.ts", [
      "serve",
      ...listenArgs(ctx, "caOpen"),
      "--protocol",
      "seed",
      "--port",
      String(ctx.ports.caOpen),
      "--data-dir",
      `${ctx.dir}/ca-open`,
    ]),
    ctx.actors.serve("CUHK", "actors/ca.ts", [
      "serve",
      ...listenArgs(ctx, "ca"),
      "--port",
      String(ctx.ports.ca),
      "--data-dir",
      `${ctx.dir}/ca`,
    ]),
  ]);
}

export const ATTACK_ENROL_IMPERSONATION = scenario({
  name: "attack-enrol-impersonation",
  title: "Trudy, enrol-impersonation: a certificate for someone else's student ID",
  ports: ["caOpen", "ca"],
  capture: (p) => [p.caOpen, p.ca],
  actors: (p) => ({
    servers: { [p.caOpen]: "CUHK (CA, open enrolment)", [p.ca]: "CUHK (CA)" },
    clients: { [p.caOpen]: "Trudy", [p.ca]: "Trudy" },
    order: ["Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    sections: halves([p.caOpen], [p.ca]),
  }),
  labels: [caProtocol.label("csr"), caProtocol.label("certificate"), caProtocol.label("error")],
  path: ["Trudy", "CUHK (CA, open enrolment)"],
  marks: [
    {
      section: "seed",
      from: "Trudy",
      to: "CUHK (CA, open enrolment)",
      label: "STEP 1 CSR",
      note: `Trudy's CSR: the victim's ID ${VICTIM_SID}, her own key`,
    },
    {
      section: "default",
      from: "Trudy",
      to: "CUHK (CA)",
      label: "STEP 1 CSR",
      note: `Trudy's CSR: the victim's ID ${VICTIM_SID}, her own key, no enrolment code`,
    },
  ],
  async run(ctx) {
    const [open, strict] = await startBothCas(ctx);
    const attack = (ca: number, dir: string) =>
      outcome(ctx.actors.spawn("Trudy", "actors/trudy.ts", [
        "enrol-impersonation",
        "--victim",
        VICTIM_SID,
        "--ca",
        hostPort(serverAt(ctx, ca)),
        "--ca-cert",
        `${ctx.dir}/${dir}/cuhk.cer`,
      ]));

    ctx.sink(
      `* seed mode (--protocol seed: open enrolment): Trudy asks for cert 2 with ${VICTIM_SID}'s ID`,
    );
    checkVerdict(ctx, "seed", await attack(ctx.ports.caOpen, "ca-open"), {
      reason: "enrolled-without-code",
      says: "ATTACK SUCCEEDED",
    });
    check(
      ctx,
      `seed: the open CA signed cert 2 for ${VICTIM_SID}, Trudy's key in it`,
      await prints(open, new RegExp(`STEP 2 signed cert 2 for SID ${VICTIM_SID}`)),
    );

    ctx.sink(`* default: ${VICTIM_SID} has a one-time code; Trudy does not know it`);
    await ctx.actors.run("ca code", "actors/ca.ts", [
      "code",
      "--sid",
      VICTIM_SID,
      "--data-dir",
      `${ctx.dir}/ca`,
    ]);
    checkVerdict(ctx, "default", await attack(ctx.ports.ca, "ca"), {
      reason: "code-required",
      says: "ATTACK FAILED: the CA refused (no valid enrolment code)",
    });
    check(
      ctx,
      "default: the CA refused and signed nothing",
      await prints(strict, /refused .*Enrolment code is not valid/) &&
        !/signed cert 2/.test(strict.output),
    );
  },
});

export const ATTACK_ENROL_CODE_THEFT = scenario({
  name: "attack-enrol-code-theft",
  title: "Trudy, enrol-code-theft: her CSR swapped into a student's enrolment on the path",
  ports: ["caOpen", "ca", "trudySeed", "trudy"],
  capture: (p) => [p.caOpen, p.ca, p.trudySeed, p.trudy],
  actors: (p) => ({
    servers: {
      [p.caOpen]: "CUHK (CA, open enrolment)",
      [p.ca]: "CUHK (CA)",
      [p.trudySeed]: "Trudy",
      [p.trudy]: "Trudy",
    },
    clients: {
      [p.caOpen]: "Trudy",
      [p.ca]: "Trudy",
      [p.trudySeed]: "Student",
      [p.trudy]: "Student",
    },
    // On the default CA's port Trudy's relay connects first; then the student enrols directly.
    inOrder: { [p.ca]: ["Trudy", "Student"] },
    order: ["Student", "Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    sections: halves([p.caOpen, p.trudySeed], [p.ca, p.trudy]),
  }),
  labels: [caProtocol.label("csr"), caProtocol.label("certificate"), caProtocol.label("error")],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Student", "Trudy", "CUHK (CA)"],
  marks: [
    {
      section: "seed",
      from: "Trudy",
      to: "CUHK (CA, open enrolment)",
      label: "STEP 1 CSR",
      note: "Trudy swapped her own CSR (her key) in for the student's",
    },
    {
      section: "default",
      from: "Trudy",
      to: "CUHK (CA)",
      label: "STEP 1 CSR",
      note: "Trudy swapped her own CSR (her key) in for the student's, the student's binding kept",
    },
  ],
  async run(ctx) {
    const [open, strict] = await startBothCas(ctx);
    const halves = [
      { half: "seed" as const, ca: ctx.ports.caOpen, dir: "ca-open", port: ctx.ports.trudySeed },
      { half: "default" as const, ca: ctx.ports.ca, dir: "ca", port: ctx.ports.trudy },
    ];
    let code = "";
    for (const h of halves) {
      const trudy = await startTrudy(
        ctx,
        h.half,
        "enrol-code-theft",
        [],
        h.port,
        serverAt(ctx, h.ca),
        "--ca",
      );
      if (h.half === "default") {
        ctx.sink(`* default: the CA operator issues ${VICTIM_SID}'s one-time code`);
        code = (await ctx.actors.run("ca code", "actors/ca.ts", [
          "code",
          "--sid",
          VICTIM_SID,
          "--data-dir",
          `${ctx.dir}/ca`,
        ])).trim();
      }
      ctx.sink(`* ${h.half}: student ${VICTIM_SID} enrols through Trudy`);
      const student = await outcome(ctx.actors.spawn("student", "actors/student.ts", [
        "enroll",
        "--sid",
        VICTIM_SID,
        // The seed half's open CA issues no codes.
        ...(h.half === "seed" ? ["--no-code"] : ["--code", code]),
        "--ca",
        via(ctx, h.port, serverAt(ctx, h.ca)),
        "--ca-cert",
        `${ctx.dir}/${h.dir}/cuhk.cer`,
        "--home",
        `${ctx.dir}/students-${h.half}/${VICTIM_SID}`,
      ]));
      if (h.half === "seed") {
        checkVerdict(ctx, "seed", await outcome(trudy), {
          reason: "swapped-csr-signed",
          says: "ATTACK SUCCEEDED (the open CA signed Trudy's CSR for the victim's ID)",
        });
        check(
          ctx,
          `seed: the open CA signed cert 2 for ${VICTIM_SID}; the student saw it is not its key`,
          await prints(open, new RegExp(`STEP 2 signed cert 2 for SID ${VICTIM_SID}`)) &&
            student.code !== 0 && /does not carry the key of this CSR/.test(student.stderr),
        );
      } else {
        checkVerdict(ctx, "default", await outcome(trudy), {
          reason: "binding-refused",
          says:
            "ATTACK FAILED: the CA refused Trudy's CSR at STEP 2 (the binding covers the student's)",
        });
        check(
          ctx,
          "default: the CA refused the swap and signed nothing; Trudy saw no code",
          await prints(strict, /refused .*Enrolment code is not valid/) &&
            !/signed cert 2/.test(strict.output) && student.code !== 0,
        );
        // Trudy is off the path now (on the netlab: her nft rule goes).
        await ctx.place.release();
        ctx.sink(`* default: ${VICTIM_SID} enrols again, directly, with the same code`);
        const again = await outcome(ctx.actors.spawn("student", "actors/student.ts", [
          "enroll",
          "--sid",
          VICTIM_SID,
          "--code",
          code,
          "--ca",
          at(ctx, "ca"),
          "--ca-cert",
          `${ctx.dir}/ca/cuhk.cer`,
          "--home",
          `${ctx.dir}/students-again/${VICTIM_SID}`,
        ]));
        check(
          ctx,
          "default: the victim's code was not burned: the direct enrolment succeeds",
          again.code === 0 && /sign finished/.test(again.stdout + again.stderr),
        );
      }
    }
  },
});
