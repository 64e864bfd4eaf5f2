/**
 * Trudy against Blackboard (system 1), seed mode then the default: session-key-sniff (the session
 * key read off the wire, a forged message | HMAC; then passively, from the capture),
 * message-replay (a step-6 message sent twice) and crl-rollback (the CA's CRL from before a
 * revocation replayed to Blackboard on its path to the CA; the default only: the seeds had no CRL).
 */

import { caProtocol } from "../../lib/ca/mod.ts";
import { type RunningProcess, StepLog } from "../../lib/runtime/mod.ts";
import {
  FORGED_MESSAGE,
  reasonLine,
  ROLLBACK_MESSAGE,
  sniffCapture,
  verdictLine,
  verdictStatus,
} from "../../lib/trudy/mod.ts";
import type { ActorMap } from "../../lib/wireshark/mod.ts";
import { halves, startTrudy, VICTIM_SID } from "./attacks.ts";
import { check, checkVerdict, type Half } from "./checks.ts";
import {
  at,
  type Context,
  hostPort,
  outcome,
  type Ports,
  prints,
  scenario,
  serverAt,
  via,
} from "./harness.ts";
import { bb, enrol, issueServer, serveBlackboard, session, startCa, STUDENT_SID } from "./steps.ts";

const BB_ATTACK_PORTS = ["ca", "bbSeed", "trudySeed", "blackboard", "trudy"] as const;
type BbAttackPort = typeof BB_ATTACK_PORTS[number];

/** Blackboard attacks' set-up: the CA, Blackboard in seed mode and in the default, a student. */
async function startBlackboards(
  ctx: Context<BbAttackPort>,
): Promise<{ seed: RunningProcess; def: RunningProcess; home: string }> {
  await startCa(ctx);
  await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
  const [seed, def, home] = await Promise.all([
    serveBlackboard(ctx, {
      name: "Blackboard (seed)",
      seed: true,
      port: ctx.ports.bbSeed,
      dataDir: `${ctx.dir}/blackboard-seed`,
    }),
    serveBlackboard(ctx, {
      name: "Blackboard",
      port: ctx.ports.blackboard,
      dataDir: `${ctx.dir}/blackboard`,
      macOnly: true,
    }),
    enrol(ctx, STUDENT_SID),
  ]);
  return { seed, def, home };
}

/**
 * The student's `send` through Trudy's port (seed or default protocol); `macOnly`: MAC-only
 * records (teaching), so that the capture shows the step-6 message by name.
 */
function studentSend(
  ctx: Context,
  half: Half,
  home: string,
  /** Where the student dials (Trudy's port on loopback, Blackboard itself on the netlab). */
  blackboard: string,
  text: string,
  macOnly = false,
): RunningProcess {
  return ctx.actors.spawn("student", "actors/student.ts", [
    "send",
    ...(half === "seed" ? ["--protocol", "seed"] : []),
    ...(macOnly ? ["--records", "hmac"] : []),
    "--sid",
    STUDENT_SID,
    "--home",
    home,
    "--blackboard",
    blackboard,
    "--message",
    text,
  ]);
}

function count(text: string, line: string): number {
  return text.split("\n").filter((l) => l === line).length;
}

const bbAttackActors = (p: Ports<BbAttackPort>): ActorMap => ({
  servers: {
    [p.bbSeed]: "Blackboard",
    [p.blackboard]: "Blackboard",
    [p.trudySeed]: "Trudy",
    [p.trudy]: "Trudy",
  },
  clients: {
    [p.bbSeed]: "Trudy",
    [p.blackboard]: "Trudy",
    [p.trudySeed]: "Student",
    [p.trudy]: "Student",
  },
  order: ["Student", "Trudy", "Blackboard"],
  sections: halves([p.bbSeed, p.trudySeed], [p.blackboard, p.trudy]),
});

export const ATTACK_SESSION_KEY_SNIFF = scenario({
  name: "attack-session-key-sniff",
  title:
    "Trudy, session-key-sniff: the session key read off the wire, a forged message | HMAC; seed mode then the default",
  ports: BB_ATTACK_PORTS,
  capture: (p) => [p.bbSeed, p.trudySeed, p.blackboard, p.trudy],
  actors: bbAttackActors,
  labels: [
    bb("seedRequest"),
    bb("seedSessionKey"),
    bb("seedKeyEcho"),
    bb("seedMessage"),
    bb("request"),
    bb("sessionKey"),
    bb("confirm"),
    // The real default (AES-GCM records): Trudy's forgery under a guessed key, and Blackboard's
    // refusal after the handshake, sealed in a record (never in the clear) that Trudy cannot open.
    bb("sealed"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Student", "Trudy", "Blackboard"],
  marks: [
    {
      section: "seed",
      from: "Student",
      to: "Trudy",
      label: "STEP 5 decrypted session key IN THE CLEAR",
      note: "Trudy copies the session key as it passes",
    },
    {
      section: "seed",
      from: "Trudy",
      to: "Blackboard",
      label: "STEP 6 message",
      note: "forged by Trudy: her own message, its HMAC under the sniffed key",
    },
    {
      section: "default",
      from: "Trudy",
      to: "Blackboard",
      label: "STEP 6 message",
      note: "forged by Trudy: her own message, sealed under a guessed key",
    },
  ],
  async run(ctx) {
    const { seed, def, home } = await startBlackboards(ctx);

    let trudy = await startTrudy(
      ctx,
      "seed",
      "session-key-sniff",
      [
        "--settle-ms",
        "500",
      ],
      ctx.ports.trudySeed,
      serverAt(ctx, ctx.ports.bbSeed),
      "--blackboard",
    );
    ctx.sink("* the student (seed protocol) sends one message through Trudy's port");
    await outcome(
      studentSend(
        ctx,
        "seed",
        home,
        via(ctx, ctx.ports.trudySeed, serverAt(ctx, ctx.ports.bbSeed)),
        "my own message",
      ),
    );
    checkVerdict(ctx, "seed", await outcome(trudy), {
      reason: "sniffed-key-forgery-accepted",
      says: "ATTACK SUCCEEDED (key read at STEP 5, forgery accepted)",
    });
    const forged = `Message from ${STUDENT_SID}: ${FORGED_MESSAGE}`;
    check(
      ctx,
      `seed: Blackboard printed Trudy's forgery as ${STUDENT_SID}'s message`,
      await prints(seed, new RegExp(forged.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"))),
    );

    trudy = await startTrudy(
      ctx,
      "default",
      "session-key-sniff",
      [],
      ctx.ports.trudy,
      serverAt(ctx, ctx.ports.blackboard),
      "--blackboard",
    );
    ctx.sink("* the student (default protocol) sends one message through Trudy's port");
    const student = await outcome(
      studentSend(
        ctx,
        "default",
        home,
        via(ctx, ctx.ports.trudy, serverAt(ctx, ctx.ports.blackboard)),
        "my own message",
      ),
    );
    checkVerdict(ctx, "default", await outcome(trudy), {
      reason: "mac-refused",
      says: "ATTACK FAILED: no key on the wire, the forgery refused",
    });
    check(
      ctx,
      "default: Blackboard printed nothing (the session closed on the forgery), the student was told",
      !/Message from/.test(def.output) && student.code !== 0,
      `student exit ${student.code}`,
    );
  },
  async analyse(ctx, capture) {
    ctx.sink("* Trudy, passive: session-key-sniff --pcap on this scenario's own capture");
    const log = new StepLog("Trudy", { sink: (line) => ctx.sink(`  ${line}`) });
    const seed = await sniffCapture({ pcap: capture, port: ctx.ports.bbSeed, log });
    ctx.sink(`  [Trudy] ${verdictLine(seed)}`);
    checkVerdict(ctx, "seed", {
      code: verdictStatus(seed),
      stdout: `${verdictLine(seed)}\n${reasonLine(seed)}\n`,
      stderr: "",
    }, {
      reason: "key-in-capture",
      says: "(--pcap) ATTACK SUCCEEDED: the key read from the capture, 2 of 2 messages verify",
    });
    const def = await sniffCapture({ pcap: capture, port: ctx.ports.blackboard, log });
    ctx.sink(`  [Trudy] ${verdictLine(def)}`);
    checkVerdict(ctx, "default", {
      code: verdictStatus(def),
      stdout: `${verdictLine(def)}\n${reasonLine(def)}\n`,
      stderr: "",
    }, {
      reason: "no-key-in-capture",
      says: "(--pcap) ATTACK FAILED: no session key in the capture",
    });
  },
});

export const ATTACK_MESSAGE_REPLAY = scenario({
  name: "attack-message-replay",
  title: "Trudy, message-replay: a step-6 message sent twice, seed mode then the default",
  ports: BB_ATTACK_PORTS,
  capture: (p) => [p.bbSeed, p.trudySeed, p.blackboard, p.trudy],
  actors: bbAttackActors,
  labels: [
    bb("seedRequest"),
    bb("seedSessionKey"),
    bb("seedKeyEcho"),
    bb("seedMessage"),
    bb("request"),
    bb("sessionKey"),
    bb("confirm"),
    bb("ready"),
    session("message"),
    // Blackboard's refusal after the handshake travels inside a record, never in the clear.
    session("error"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Student", "Trudy", "Blackboard"],
  marks: [
    {
      section: "seed",
      from: "Trudy",
      to: "Blackboard",
      label: "STEP 6 message",
      nth: 2,
      note: "replayed by Trudy: the student's message a second time",
    },
    {
      section: "default",
      from: "Trudy",
      to: "Blackboard",
      label: "STEP 6 message | HMAC (sequence numbered) [STEP 6 message]",
      nth: 2,
      note: "replayed by Trudy: the student's record a second time",
    },
  ],
  async run(ctx) {
    const { seed, def, home } = await startBlackboards(ctx);
    const text = "pay me once";
    const printed = `Message from ${STUDENT_SID}: ${text}`;

    let trudy = await startTrudy(
      ctx,
      "seed",
      "message-replay",
      [
        "--settle-ms",
        "500",
      ],
      ctx.ports.trudySeed,
      serverAt(ctx, ctx.ports.bbSeed),
      "--blackboard",
    );
    ctx.sink(`* the student (seed protocol) sends '${text}' once, through Trudy's port`);
    await outcome(
      studentSend(
        ctx,
        "seed",
        home,
        via(ctx, ctx.ports.trudySeed, serverAt(ctx, ctx.ports.bbSeed)),
        text,
      ),
    );
    checkVerdict(ctx, "seed", await outcome(trudy), {
      reason: "copy-accepted",
      says: "ATTACK SUCCEEDED (the copy accepted)",
    });
    await prints(seed, new RegExp(`(${printed}\\n[^]*){2}`));
    check(
      ctx,
      `seed: Blackboard printed '${text}' twice`,
      count(seed.output, printed) === 2,
      `printed ${count(seed.output, printed)} times`,
    );

    trudy = await startTrudy(
      ctx,
      "default",
      "message-replay",
      [],
      ctx.ports.trudy,
      serverAt(ctx, ctx.ports.blackboard),
      "--blackboard",
    );
    ctx.sink(`* the student (default protocol) sends '${text}' once, through Trudy's port`);
    await outcome(
      studentSend(
        ctx,
        "default",
        home,
        via(ctx, ctx.ports.trudy, serverAt(ctx, ctx.ports.blackboard)),
        text,
        true,
      ),
    );
    checkVerdict(ctx, "default", await outcome(trudy), {
      reason: "replay-refused",
      says: "ATTACK FAILED: the copy refused by its sequence number",
    });
    await prints(def, new RegExp(printed));
    check(
      ctx,
      `default: Blackboard printed '${text}' once`,
      count(def.output, printed) === 1,
      `printed ${count(def.output, printed)} times`,
    );
  },
});

/**
 * No seed half: the seeds had no CRL, so a stolen cert 2 was never refused and there is nothing to
 * roll back; seed-mode Blackboard checks revocation with the same checker as the default, and the
 * product has no checker that takes an older CRL (tests/trudy/crl_rollback_test.ts shows the
 * attack succeed against such a checker, a test double).
 */
export const ATTACK_CRL_ROLLBACK = scenario({
  name: "attack-crl-rollback",
  title:
    "Trudy, crl-rollback: the pre-revocation CRL replayed to Blackboard on its path to the CA; the default only (the seeds had no CRL)",
  ports: ["ca", "blackboard", "trudy"],
  capture: (p) => [p.ca, p.blackboard, p.trudy],
  actors: (p) => ({
    servers: { [p.ca]: "CUHK (CA)", [p.blackboard]: "Blackboard", [p.trudy]: "Trudy" },
    // Trudy logs in to Blackboard and relays to the CA; Blackboard fetches its CRL from Trudy.
    clients: { [p.ca]: "Trudy", [p.blackboard]: "Trudy", [p.trudy]: "Blackboard" },
    byFirstMessage: { [caProtocol.label("csr")]: "Student" },
    order: ["Student", "Blackboard", "Trudy", "CUHK (CA)"],
    sections: [{
      key: "default",
      title: "Default mode only: the seeds had no CRL",
      ports: [p.ca, p.blackboard, p.trudy],
    }],
  }),
  labels: [
    caProtocol.label("csr"),
    caProtocol.label("certificate"),
    caProtocol.label("crlRequest"),
    caProtocol.label("crl"),
    bb("request"),
    bb("sessionKey"),
    bb("confirm"),
    bb("ready"),
    // Trudy's message before the revocation: an AES-GCM record, named but not readable.
    bb("sealed"),
    bb("error"),
  ],
  trudyPorts: (p) => [p.trudy],
  path: ["Blackboard", "Trudy", "CUHK (CA)"],
  marks: [{
    section: "default",
    from: "Trudy",
    to: "Blackboard",
    label: "CRL",
    // The CA's CRL is number 1 until the revocation, then number 2: the second number 1 that
    // Trudy hands Blackboard is her replay.
    detail: "number 1",
    nth: 2,
    note: "Trudy replays the CA's old CRL (number 1, before the revocation) in place of number 2",
  }],
  async run(ctx) {
    await startCa(ctx);
    await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
    const home = await enrol(ctx, VICTIM_SID);
    ctx.notes.push(
      "no seed half: the seeds had no CRL (a stolen cert 2 was never refused, nothing to roll back)",
    );
    ctx.sink(`* Trudy holds cert 2 of ${VICTIM_SID} and its key (stolen: why it will be revoked)`);
    const trudy = await startTrudy(
      ctx,
      "default",
      "crl-rollback",
      [
        "--ca",
        at(ctx, "ca"),
        "--blackboard",
        hostPort(serverAt(ctx, ctx.ports.blackboard)),
        "--home",
        home,
        "--interval-ms",
        "300",
        "--wait",
        "60",
      ],
      ctx.ports.trudy,
      serverAt(ctx, ctx.ports.ca),
    );
    ctx.sink("* Blackboard (default) fetches its CRL through Trudy's port, every second");
    const def = await serveBlackboard(ctx, {
      name: "Blackboard",
      port: ctx.ports.blackboard,
      dataDir: `${ctx.dir}/blackboard-data`,
      crlFrom: via(ctx, ctx.ports.trudy, serverAt(ctx, ctx.ports.ca)),
      crlRefreshSecs: 1,
    });
    await trudy.waitFor(/STEP R1 logged in to Blackboard as \d+ with the stolen cert 2/, 60_000);
    const recorded = /STEP R1 recorded the CA's CRL #(\d+) /.exec(trudy.stderr)?.[1] ?? "?";
    ctx.sink(`* the CA revokes cert 2 of ${VICTIM_SID}`);
    await ctx.actors.run("ca revoke", "actors/ca.ts", [
      "revoke",
      "--sid",
      VICTIM_SID,
      "--data-dir",
      `${ctx.dir}/ca`,
    ]);
    await trudy.waitFor(/STEP R2 Blackboard now refuses cert 2/, 60_000);
    const printed = `Message from ${VICTIM_SID}: ${ROLLBACK_MESSAGE}`;
    const before = count(def.stdout, printed);

    const result = await outcome(trudy);
    checkVerdict(ctx, "default", result, {
      reason: "rollback-refused",
      says:
        "ATTACK FAILED: Blackboard refused the older CRL and kept the newer one (the revoked cert 2 stays out)",
    });
    const rollback = new RegExp(
      `WARNING cannot refresh the CRL \\(CRL #${recorded} from the CA at ${
        via(ctx, ctx.ports.trudy, serverAt(ctx, ctx.ports.ca)).replaceAll(".", "\\.")
      } is older than CRL #\\d+, already held: refused \\(a rollback\\)\\)`,
    );
    check(
      ctx,
      `default: Trudy replayed CRL #${recorded}; Blackboard refused it as a rollback`,
      new RegExp(`STEP R3 replaced the CA's CRL #\\d+ with the recorded CRL #${recorded} `)
        .test(result.stderr) && await prints(def, rollback),
      def.stderr.split("\n").filter((l) => /CRL/.test(l)).slice(-3).join(" / "),
    );
    const after = count(def.stdout, printed);
    check(
      ctx,
      `default: the revoked cert 2 of ${VICTIM_SID} stays refused: Blackboard printed nothing from it after the revocation`,
      before >= 1 && after === before &&
        new RegExp(`refused .*${VICTIM_SID}: it has been revoked`).test(def.stderr),
      `printed ${before} time(s) before the revocation, ${after} in all`,
    );
  },
});
