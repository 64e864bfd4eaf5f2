/**
 * The attack scenarios (`deno task capture attack-…`), each with real capture on lo: Trudy runs
 * against seed mode and then the default (crl-rollback the default only: the seeds had no CRL), as
 * real processes on free ports; her verdicts, the victims' outcomes, the dissector's names on her
 * port and the ladder (victim, Trudy, server) are all checked by the scenario, and the test checks
 * the scenario's own assertions were made and passed, and reads the capture and the diagram again.
 */

import assert from "node:assert/strict";
import { ATTACK_SCENARIOS, runScenario, type ScenarioName } from "../../tasks/scenarios/mod.ts";
import { readLabMessages } from "../../lib/wireshark/mod.ts";
import type { VerdictReason } from "../../lib/trudy/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

/** Per attack: the verdicts expected in the notes, the lanes of the ladder, messages that must be on the wire. */
const EXPECTED: Record<
  string,
  {
    /**
     * Trudy's reason code against seed mode (null: no seed half, the seeds lacked the mechanism
     * attacked), and against the default.
     */
    seed: VerdictReason | null;
    default: VerdictReason;
    lanes: string[];
    wire: RegExp[];
    outcomes: RegExp[];
    /** An arrow that must appear exactly twice, and one exactly once (the replayed message). */
    twice?: string;
    once?: string;
  }
> = {
  "attack-enrol-impersonation": {
    seed: "enrolled-without-code",
    default: "code-required",
    lanes: ["Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    wire: [/^Trudy → CUHK \(CA, open enrolment\): STEP 1 CSR$/, /^CUHK \(CA\) → Trudy: error$/],
    outcomes: [/^seed: the open CA signed cert 2/, /^default: the CA refused and signed nothing/],
  },
  "attack-enrol-code-theft": {
    seed: "swapped-csr-signed",
    default: "binding-refused",
    lanes: ["Student", "Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    wire: [/^Trudy → CUHK \(CA\): STEP 1 CSR$/, /^CUHK \(CA\) → Trudy: error$/],
    outcomes: [/^seed: the open CA signed cert 2/, /^default: the victim's code was not burned/],
  },
  "attack-bank-mitm": {
    seed: "seed-key-accepted",
    default: "key-refused",
    lanes: ["Alice", "Trudy", "Bob (bank)"],
    wire: [
      /^Trudy → Alice: STEP 2 Hi, I'm Bob \(seed\)$/,
      /^Alice → Trudy: STEP 6 record \(seed, AES-256-ECB\)$/,
      /^Trudy → Bob \(bank\): STEP 6 record \(seed, AES-256-ECB\)$/,
      /^Alice → Trudy: error$/,
    ],
    outcomes: [/^seed: Bob stored a balance of 900\.00/, /^default: Alice stopped at STEP 2/],
  },
  "attack-bank-replay": {
    seed: "replay-accepted",
    default: "replay-refused",
    lanes: ["Alice", "Trudy", "Bob (bank)"],
    wire: [
      /^Bob \(bank\) → Trudy: STEP 4 Bob's proof \(seed\)$/,
      /^Alice → Trudy: STEP 5 Alice's secret \(seed\)$/,
      /^Trudy → Alice: STEP 4 Bob's proof$/,
      /^Alice → Trudy: error$/,
    ],
    outcomes: [/^seed: Alice accepted the replayed proof/, /^default: Alice stopped at STEP 4/],
  },
  "attack-session-key-sniff": {
    seed: "sniffed-key-forgery-accepted",
    default: "mac-refused",
    lanes: ["Student", "Trudy", "Blackboard"],
    wire: [
      /^Student → Trudy: STEP 5 decrypted session key IN THE CLEAR \(seed\)$/,
      /^Trudy → Blackboard: STEP 6 message \| HMAC, no sequence number \(seed\)$/,
      // The default's records are AES-GCM: Trudy's forgery under a guessed key, and Blackboard's
      // refusal inside a sealed record (not in the clear) that Trudy cannot open.
      /^Trudy → Blackboard: STEP 6 message \(AES-GCM, sequence numbered\)$/,
      /^Blackboard → Trudy: STEP 6 message \(AES-GCM, sequence numbered\)$/,
    ],
    outcomes: [
      /^seed: Blackboard printed Trudy's forgery/,
      /^default: Blackboard printed nothing/,
      /^seed: Trudy's verdict \(--pcap\) ATTACK SUCCEEDED/,
      /^default: Trudy's verdict \(--pcap\) ATTACK FAILED: no session key in the capture/,
    ],
  },
  "attack-message-replay": {
    seed: "copy-accepted",
    default: "replay-refused",
    lanes: ["Student", "Trudy", "Blackboard"],
    // After the handshake Blackboard refuses inside an authenticated record, not in the clear.
    wire: [/^Blackboard → Trudy: STEP 6 message \| HMAC \(sequence numbered\) \[error\]$/],
    twice: "Trudy → Blackboard: STEP 6 message | HMAC, no sequence number (seed)",
    once: "Student → Trudy: STEP 6 message | HMAC, no sequence number (seed)",
    outcomes: [
      /^seed: Blackboard printed 'pay me once' twice/,
      /^default: Blackboard printed 'pay me once' once/,
    ],
  },
  "attack-cross-service": {
    seed: "cross-service-accepted",
    default: "wrong-service-refused",
    lanes: ["Alice", "Trudy"],
    wire: [
      /^Trudy → Alice: STEP 2 Hi, I'm Bob \(seed\)$/,
      /^Alice → Trudy: STEP 5 Alice's secret \(seed\)$/,
      /^Alice → Trudy: STEP 6 record \(seed, AES-256-ECB\)$/,
      /^Trudy → Alice: STEP 2 Hi, I'm Bob$/,
      /^Alice → Trudy: error$/,
    ],
    outcomes: [
      /^seed: Alice took Blackboard's key as Bob's, sent her secret/,
      /^default: Alice stopped at STEP 2 \(the certificate does not name bank\)/,
    ],
  },
  "attack-error-injection": {
    seed: "forged-error-believed",
    default: "forged-error-not-believed",
    lanes: ["Alice", "Trudy", "Bob (bank)"],
    wire: [
      /^Alice → Trudy: STEP 6 record \(seed, AES-256-ECB\)$/,
      /^Alice → Trudy: STEP 6 record \(AES-GCM\)$/,
      // Trudy's forged refusal, in the clear, in place of Bob's answer (both halves).
      /^Trudy → Alice: error$/,
    ],
    outcomes: [
      /^seed: Alice was told 'Insufficient funds' though Bob applied her withdrawal/,
      /^default: Alice did not believe the cleartext error, resent the same request; Bob applied the withdrawal exactly once/,
    ],
  },
  "attack-crl-rollback": {
    seed: null,
    default: "rollback-refused",
    lanes: ["Student", "Blackboard", "Trudy", "CUHK (CA)"],
    wire: [
      /^Blackboard → Trudy: CRL request$/,
      /^Trudy → CUHK \(CA\): CRL request$/,
      /^CUHK \(CA\) → Trudy: CRL$/,
      /^Trudy → Blackboard: CRL$/,
      /^Trudy → Blackboard: STEP 3 request \| cert 2$/,
      /^Blackboard → Trudy: error$/,
    ],
    outcomes: [
      /^default: Trudy replayed CRL #\d+; Blackboard refused it as a rollback$/,
      /^default: the revoked cert 2 of \d+ stays refused/,
    ],
  },
};

Deno.test("capture scenarios: each attack against seed mode and the default, captured and checked", async (t) => {
  await using dir = await tempDir("lab-attacks-");
  assert.deepEqual([...ATTACK_SCENARIOS].sort(), Object.keys(EXPECTED).sort());
  for (const name of ATTACK_SCENARIOS) {
    await t.step(name, async () => {
      const expected = EXPECTED[name]!;
      const lines: string[] = [];
      const r = await runScenario(name as ScenarioName, {
        outDir: `${dir.path}/out`,
        workParent: `${dir.path}/work`,
        capture: true,
        diagram: true,
        sink: (l) => lines.push(l),
      });
      const why = `${r.error ?? ""}\n${
        r.checks.map((c) => `${c.ok ? "PASS" : "FAIL"} ${c.what}\n${c.report ?? ""}`).join("\n")
      }\n${lines.slice(-30).join("\n")}`;
      assert.ok(r.ok, why);

      // The scenario asserted both verdicts and the victims' outcomes, and they passed.
      const what = r.checks.map((c) => c.what);
      if (expected.seed !== null) {
        assert.ok(what.some((w) => /^seed: Trudy's verdict ATTACK SUCCEEDED/.test(w)), why);
      } else {
        // No seed half is faked: no seed verdict at all, and the notes say why.
        assert.ok(!what.some((w) => /^seed: /.test(w)), why);
        assert.ok(r.notes.some((n) => /^no seed half: the seeds had no /.test(n)), why);
      }
      assert.ok(what.some((w) => /^default: Trudy's verdict ATTACK FAILED: /.test(w)), why);
      for (const o of expected.outcomes) assert.ok(what.some((w) => o.test(w)), `${o}\n${why}`);
      // Each half's verdict line, with its reason code (not its sentence).
      const verdict = (half: string, outcome: string, reason: string) =>
        new RegExp(`^${half}: ATTACK ${outcome}: .* \\[${reason}\\]$`);
      const defaultVerdict = verdict("default", "FAILED", expected.default);
      if (expected.seed !== null) {
        const seedVerdict = verdict("seed", "SUCCEEDED", expected.seed);
        assert.ok(r.notes.some((n) => seedVerdict.test(n)), r.notes.join("\n"));
      }
      assert.ok(r.notes.some((n) => defaultVerdict.test(n)), r.notes.join("\n"));
      // Trudy's STEP lines reached the output (crl-rollback's are R1-R3).
      assert.ok(lines.some((l) => /\[Trudy( #\d+)?\] STEP R?\d/.test(l)), lines.join("\n"));

      // The dissector names every message, on Trudy's free ports too, and the ladder puts Trudy
      // between the victim and the server.
      const messages = await readLabMessages(r.capture!);
      assert.ok(messages.length > 0);
      assert.ok(!messages.some((m) => /unknown message type/.test(m.label)));
      if (name !== "attack-enrol-impersonation") {
        assert.ok(what.some((w) => /recognises Trudy's free ports?\b/.test(w)), why);
      }
      const ladder = r.diagram!.ladder;
      assert.deepEqual(ladder.actors, expected.lanes);
      const arrows = ladder.arrows.map((a) => `${a.from} → ${a.to}: ${a.label}`);
      for (const w of expected.wire) {
        assert.ok(arrows.some((a) => w.test(a)), `${w}\n${arrows.join("\n")}`);
      }
      if (expected.twice) assert.equal(arrows.filter((a) => a === expected.twice).length, 2);
      if (expected.once) assert.equal(arrows.filter((a) => a === expected.once).length, 1);
      const svg = await Deno.readTextFile(r.diagram!.svg);
      assert.match(svg, />Trudy</);
    });
  }
});
