/**
 * Seed mode, for teaching: systems 1 and 2 as the seeds wrote them, flaws included (the session
 * key echoed in the clear, Bob's unauthenticated key, ECB records).
 */

import { caProtocol } from "../../lib/ca/mod.ts";
import { at, scenario } from "./harness.ts";
import {
  bank,
  bb,
  enrol,
  issueServer,
  serveBlackboard,
  serveBob,
  startCa,
  STUDENT_SID,
} from "./steps.ts";

export const SEED = scenario({
  name: "seed",
  title: "Seed mode (teaching): systems 1 and 2 as the seeds wrote them, flaws on the wire",
  ports: ["ca", "blackboard", "bank"],
  capture: (p) => [p.ca, p.blackboard, p.bank],
  actors: (p) => ({
    servers: { [p.ca]: "CUHK (CA)", [p.blackboard]: "Blackboard", [p.bank]: "Bob (bank)" },
    clients: { [p.ca]: "Student", [p.blackboard]: "Student", [p.bank]: "Alice" },
    byFirstMessage: { [caProtocol.label("crlRequest")]: "Blackboard" },
    order: ["Student", "CUHK (CA)", "Blackboard", "Alice", "Bob (bank)"],
  }),
  labels: [
    bb("seedRequest"),
    bb("seedSessionKey"),
    bb("seedKeyEcho"),
    bb("seedOk"),
    bb("seedMessage"),
    bank("seedHello"),
    bank("seedHiBob"),
    bank("seedProveIt"),
    bank("seedProof"),
    bank("seedSecret"),
    bank("seedRecord"),
  ],
  async run(ctx) {
    await startCa(ctx);
    await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
    await serveBlackboard(ctx, {
      name: "Blackboard",
      seed: true,
      port: ctx.ports.blackboard,
      dataDir: `${ctx.dir}/blackboard`,
    });
    const home = await enrol(ctx, STUDENT_SID);
    ctx.sink("* seed mode: the student sends the decrypted session key back in the clear");
    await ctx.actors.run("student", "actors/student.ts", [
      "send",
      "--protocol",
      "seed",
      "--sid",
      STUDENT_SID,
      "--home",
      home,
      "--blackboard",
      at(ctx, "blackboard"),
      "--message",
      "Anyone who saw STEP 5 can forge this",
    ]);
    await serveBob(ctx, {
      name: "Bob",
      seed: true,
      port: ctx.ports.bank,
      dataDir: `${ctx.dir}/bank`,
    });
    ctx.sink("* seed mode: Bob's key unauthenticated, a replayable proof, ECB records");
    await ctx.actors.run("Alice", "actors/bank.ts", [
      "client",
      "--protocol",
      "seed",
      "--bank",
      at(ctx, "bank"),
      "--customer",
      "alice",
    ], { stdin: "deposit 10.00\nbalance\nexit\n" });
  },
});
