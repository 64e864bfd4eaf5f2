/**
 * System 1: a student enrols with the CA (steps 1-2), then talks to Blackboard and uploads a report
 * (steps 3-6).
 */

import { caProtocol } from "../../lib/ca/mod.ts";
import { check } from "./checks.ts";
import { at, scenario } from "./harness.ts";
import {
  bb,
  enrol,
  issueServer,
  serveBlackboard,
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
    await enrol(ctx, STUDENT_SID, enrolmentCodes(ctx));
  },
  async analyse(ctx, capture) {
    // The code never crosses the wire (audit finding 1): not in any packet, in any spelling.
    const bytes = await Deno.readFile(capture);
    const codes = enrolmentCodes(ctx);
    const enc = new TextEncoder();
    const found = codes.flatMap((code) => [code, code.replaceAll("-", ""), code.toUpperCase()])
      .filter((form) => indexOf(bytes, enc.encode(form)) >= 0);
    check(
      ctx,
      `the capture holds no enrolment code (${codes.length} issued, searched in every packet)`,
      codes.length > 0 && found.length === 0,
      found.length > 0 ? `found ${found.join(", ")}` : `no code issued`,
    );
  },
});

const CODES = new WeakMap<object, string[]>();
/** The enrolment codes issued in this run of a scenario. */
function enrolmentCodes(ctx: object): string[] {
  let codes = CODES.get(ctx);
  if (!codes) CODES.set(ctx, codes = []);
  return codes;
}

/** Where `needle` starts in `haystack`, or -1. */
function indexOf(haystack: Uint8Array, needle: Uint8Array): number {
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let j = 0; j < needle.length; j++) if (haystack[i + j] !== needle[j]) continue outer;
    return i;
  }
  return -1;
}

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
    // The default's step 6 is AES-GCM: the capture names the records, never what is inside.
    bb("sealed"),
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
      at(ctx, "blackboard"),
    ];
    await ctx.actors.run("student", "actors/student.ts", [
      "send",
      ...common,
      "--message",
      UPLOAD_MESSAGE,
    ]);
    const report = `${ctx.dir}/report.txt`;
    await writeReport(report, 600 * 1024);
    ctx.sink("* the student uploads report.txt (600 KiB, in chunks of 256 KiB)");
    await ctx.actors.run("student", "actors/student.ts", ["upload", ...common, "--file", report]);
  },
  async analyse(ctx, capture) {
    // Step 6 is confidential by default (audit finding 5): neither the message nor any part of
    // the report crosses the wire in clear.
    const bytes = await Deno.readFile(capture);
    const report = await Deno.readFile(`${ctx.dir}/report.txt`);
    const samples = [0, 4096, 300 * 1024, report.length - 64].map((at) =>
      report.subarray(at, at + 64)
    );
    const leaks = [
      indexOf(bytes, new TextEncoder().encode(UPLOAD_MESSAGE)) >= 0 ? "the message" : "",
      ...samples.map((s, i) => indexOf(bytes, s) >= 0 ? `report sample ${i + 1}` : ""),
    ].filter((l) => l !== "");
    check(
      ctx,
      "the capture holds neither the step-6 message nor any sampled part of the report",
      leaks.length === 0,
      `in clear: ${leaks.join(", ")}`,
    );
  },
});

const UPLOAD_MESSAGE = "Hello Blackboard, this is my first authenticated message";
