/**
 * The attack scenarios (`deno task capture attack-…`), each with real capture on lo: Trudy runs
 * against seed mode and then the default, as real processes on free ports; her verdicts, the
 * victims' outcomes, the dissector's names on her port and the ladder (victim, Trudy, server) are
 * all checked by the scenario, and the test checks the scenario's own assertions were made and
 * passed, and reads the capture and the diagram again.
 */

import assert from "node:assert/strict";
import { ATTACK_SCENARIOS, runScenario, type ScenarioName } from "../../tasks/scenarios/mod.ts";
import { readLabMessages } from "../../lib/wireshark/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

/** Per attack: the verdicts expected in the notes, the lanes of the ladder, messages that must be on the wire. */
const EXPECTED: Record<
  string,
  {
    seed: RegExp;
    default: RegExp;
    lanes: string[];
    wire: RegExp[];
    outcomes: RegExp[];
    /** An arrow that must appear exactly twice, and one exactly once (the replayed message). */
    twice?: string;
    once?: string;
  }
> = {
  "attack-enrol-impersonation": {
    seed: /^seed: ATTACK SUCCEEDED: /,
    default:
      /^default: ATTACK FAILED: the CA refused to issue a certificate for 1155000777: Enrolment refused: Enrolment code is not valid for 1155000777$/,
    lanes: ["Trudy", "CUHK (CA, open enrolment)", "CUHK (CA)"],
    wire: [/^Trudy → CUHK \(CA, open enrolment\): STEP 1 CSR$/, /^CUHK \(CA\) → Trudy: error$/],
    outcomes: [/^seed: the open CA signed cert 2/, /^default: the CA refused and signed nothing/],
  },
  "attack-bank-mitm": {
    seed: /^seed: ATTACK SUCCEEDED: .*changed a deposit of 10\.00 into 900\.00 on its way to Bob/,
    default:
      /^default: ATTACK FAILED: Alice refused Trudy's key at STEP 2 and told Trudy why: STEP 2 Hi, I'm Bob failed: Cannot verify certificate bank: it is not issued by the pinned root$/,
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
    seed: /^seed: ATTACK SUCCEEDED: Alice accepted Bob's proof replayed from an earlier session/,
    default:
      /^default: ATTACK FAILED: Alice refused the replayed frames at STEP 4 and told Trudy why: STEP 4 Bob's proof failed: .*Alice's nonce is not in it\)$/,
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
    seed:
      /^seed: ATTACK SUCCEEDED: Trudy read the session key that the student sent back in the clear at STEP 5/,
    default:
      /^default: ATTACK FAILED: no session key crossed the wire .*HMAC does not verify \(altered\)$/,
    lanes: ["Student", "Trudy", "Blackboard"],
    wire: [
      /^Student → Trudy: STEP 5 decrypted session key IN THE CLEAR \(seed\)$/,
      /^Trudy → Blackboard: STEP 6 message \| HMAC, no sequence number \(seed\)$/,
      // After the handshake Blackboard refuses inside an authenticated record, not in the clear.
      /^Blackboard → Trudy: STEP 6 message \| HMAC \(sequence numbered\) \[error\]$/,
    ],
    outcomes: [
      /^seed: Blackboard printed Trudy's forgery/,
      /^default: Blackboard printed nothing/,
      /^seed: Trudy's verdict \(--pcap\) ATTACK SUCCEEDED/,
      /^default: Trudy's verdict \(--pcap\) ATTACK FAILED: no session key in the capture/,
    ],
  },
  "attack-message-replay": {
    seed:
      /^seed: ATTACK SUCCEEDED: Blackboard accepted the copy of the student's message 'pay me once'/,
    default:
      /^default: ATTACK FAILED: Blackboard refused the copy of record 0: .*sequence number 0, expected 1/,
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
      assert.ok(what.some((w) => /^seed: Trudy's verdict ATTACK SUCCEEDED/.test(w)), why);
      assert.ok(what.some((w) => /^default: Trudy's verdict ATTACK FAILED: /.test(w)), why);
      for (const o of expected.outcomes) assert.ok(what.some((w) => o.test(w)), `${o}\n${why}`);
      assert.ok(r.notes.some((n) => expected.seed.test(n)), r.notes.join("\n"));
      assert.ok(r.notes.some((n) => expected.default.test(n)), r.notes.join("\n"));
      // Trudy's STEP lines reached the output.
      assert.ok(lines.some((l) => /\[Trudy( #\d+)?\] STEP \d/.test(l)), lines.join("\n"));

      // The dissector names every message, on Trudy's free ports too, and the ladder puts Trudy
      // between the victim and the server.
      const messages = await readLabMessages(r.capture!);
      assert.ok(messages.length > 0);
      assert.ok(!messages.some((m) => /unknown message type/.test(m.label)));
      if (name !== "attack-enrol-impersonation") {
        assert.ok(what.some((w) => /recognises Trudy's free ports/.test(w)), why);
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
