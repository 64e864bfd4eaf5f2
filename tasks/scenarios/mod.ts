/**
 * tasks/scenarios: the capture scenarios behind `deno task capture` and `deno task demo` (re-exports
 * only). Each starts the real actors (as processes, on free loopback ports, in a private work
 * directory), runs one system end to end, and, when capture is on, records it with dumpcap, embeds
 * the TLS key log, checks the TLS record sequences against pcap/expected, checks that pcap/lab.lua
 * names every lab message, and can draw the capture as a ladder diagram.
 *
 *     enrol        the CA and a student: STEP 1 CSR, STEP 2 cert 2                  system1.ts
 *     upload       enrol, then the student talks to Blackboard and uploads a report  system1.ts
 *                  (steps 3-6)
 *     bank         Alice enrols and banks with Bob (secure mode): STEP 1 Hello …     bank.ts
 *                  STEP 6 records
 *     chat-tls13   three chat clients over TLS 1.3                                  chat.ts
 *     chat-tls12   a chat client over TLS 1.2 (the seed's sequence), and a client    chat.ts
 *                  offering only AES128-SHA (the seed's cipher), refused
 *     seed         systems 1 and 2 in seed mode, flaws included, for teaching: the   seed.ts
 *                  session key echoed in the clear, Bob's unauthenticated key, ECB records
 *     attack-…     one per attack of Trudy's (actors/trudy.ts), each run against     attacks*.ts
 *                  seed mode and then against the default, Trudy on the path on a free port:
 *                  both legs (victim ↔ Trudy, Trudy ↔ server) captured, her verdicts and the
 *                  victims' outcomes asserted
 *
 * harness.ts holds the names, the spec and context types and the actors; steps.ts the shared
 * steps; checks.ts the checks; run.ts runs a scenario.
 */

export {
  ALL_SCENARIOS,
  ATTACK_SCENARIOS,
  type Check,
  SCENARIO_NAMES,
  ScenarioError,
  type ScenarioName,
  type Sink,
} from "./harness.ts";
export { type RunOptions, runScenario, type ScenarioResult, scenarioTitle } from "./run.ts";
