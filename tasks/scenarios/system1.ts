/**
 * System 1: a student enrols with the CA (steps 1-2), then talks to Blackboard and uploads a report
 * (steps 3-6).
 */

import { caProtocol } from "../../lib/ca/mod.ts";
import { scenario } from "./harness.ts";
import {
  bb,
  enrol,
  issueServer,
  serveBlackboard,
  session,
  startCa,
  STUDENT_SID,
  writeReport,
} from "./steps.ts";

export const ENROL = scenario({
  name: "enrol",
  title: "System 1, steps 1-2: a student enrols with the CA",
  ports: ["ca"],
  capture: (p) => [p.ca],
  actors: (p) => ({ servers: { [p.ca]: "CUHK (CA)" }, clients: { [p.ca]: "Student" } }),
  labels: [caProtocol.label("csr"), caProtocol.label("certificate")],
  async run(ctx) {
    await startCa(ctx);
    await enrol(ctx, STUDENT_SID);
  },
});

export const UPLOAD = scenario({
  name: "upload",
  title: "System 1, steps 1-6: enrolment, a session with Blackboard, a report upload",
  ports: ["ca", "blackboard"],
  capture: (p) => [p.ca, p.blackboard],
  actors: (p) => ({
    servers: { [p.ca]: "CUHK (CA)", [p.blackboard]: "Blackboard" },
    clients: { [p.ca]: "Student", [p.blackboard]: "Student" },
    byFirstMessage: { [caProtocol.label("crlRequest")]: "Blackboard" },
    order: ["Student", "CUHK (CA)", "Blackboard", "Alice", "Bob (bank)"],
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
    session("message"),
    session("uploadBegin"),
    session("chunk"),
    session("uploadEnd"),
    session("receipt"),
  ],
  async run(ctx) {
    await startCa(ctx);
    await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
    await serveBlackboard(ctx, {
      name: "Blackboard",
      port: ctx.ports.blackboard,
      dataDir: `${ctx.dir}/blackboard`,
    });
    const home = await enrol(ctx, STUDENT_SID);
    const common = [
      "--sid",
      STUDENT_SID,
      "--home",
      home,
      "--blackboard",
      `127.0.0.1:${ctx.ports.blackboard}`,
      // MAC-only records (teaching): the capture shows each step-6 message by name. The default
      // AES-GCM records would show only "STEP 6 message (AES-GCM …)".
      "--records",
      "hmac",
    ];
    await ctx.actors.run("student", "actors/student.ts", [
      "send",
      ...common,
      "--message",
      "Hello Blackboard, this is my first authenticated message",
    ]);
    const report = `${ctx.dir}/report.txt`;
    await writeReport(report, 600 * 1024);
    ctx.sink("* the student uploads report.txt (600 KiB, in chunks of 256 KiB)");
    await ctx.actors.run("student", "actors/student.ts", ["upload", ...common, "--file", report]);
  },
});
