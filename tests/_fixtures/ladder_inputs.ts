/**
 * Real capture data for the ladder tests: for each capture scenario, what its diagram is drawn from
 * (lib/wireshark/diagram.ts's DiagramInput: the messages that tshark and pcap/lab.lua read from a
 * real capture of the real actors, the scenario's actor map and its red notes), kept as JSON in
 * tests/_fixtures/ladders/SCENARIO.json, so that the ladder tests need neither dumpcap nor root.
 *
 * Regenerate them after a change to the protocols' labels or to a scenario's lanes or notes
 * (captures each scenario, a few minutes; needs what `deno task capture` needs):
 *
 *     deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read=. --allow-write=. --allow-run \
 *       tests/_fixtures/ladder_inputs.ts [SCENARIO…]
 */

import type { DiagramInput } from "../../lib/wireshark/mod.ts";
import { DATA_DIR, PROJECT_ROOT } from "../../lib/runtime/mod.ts";
import { runScenario, SCENARIO_NAMES, type ScenarioName } from "../../tasks/scenarios/mod.ts";

export const LADDER_FIXTURES = `${PROJECT_ROOT}/tests/_fixtures/ladders`;

export interface LadderFixture {
  name: string;
  input: DiagramInput;
}

/** Every scenario's saved diagram input, by scenario name. */
export async function loadLadderInputs(): Promise<LadderFixture[]> {
  const fixtures: LadderFixture[] = [];
  for (const name of SCENARIO_NAMES) {
    const text = await Deno.readTextFile(`${LADDER_FIXTURES}/${name}.json`);
    fixtures.push({ name, input: JSON.parse(text) as DiagramInput });
  }
  return fixtures;
}

async function main(names: string[]): Promise<number> {
  const unknown = names.filter((n) => !(SCENARIO_NAMES as readonly string[]).includes(n));
  if (unknown.length > 0) {
    console.error(`unknown scenario(s): ${unknown.join(", ")}`);
    return 2;
  }
  const work = `${DATA_DIR}/ladder-fixtures`;
  let failed = 0;
  for (const name of (names.length > 0 ? names : SCENARIO_NAMES) as readonly ScenarioName[]) {
    const r = await runScenario(name, {
      outDir: `${work}/out`,
      workParent: `${work}/work`,
      capture: true,
      diagram: true,
      sink: () => {},
    });
    if (!r.ok || !r.diagram) {
      failed++;
      console.error(`${name}: FAILED, fixture not written: ${r.error ?? ""}`);
      for (const c of r.checks.filter((c) => !c.ok)) console.error(`  FAIL ${c.what}`);
      continue;
    }
    await Deno.writeTextFile(
      `${LADDER_FIXTURES}/${name}.json`,
      JSON.stringify(r.diagram.input, null, 2) + "\n",
    );
    console.log(`${name}: ${r.diagram.input.messages.length} messages (${r.seconds.toFixed(1)} s)`);
  }
  await Deno.remove(work, { recursive: true }).catch(() => {});
  return failed === 0 ? 0 : 1;
}

if (import.meta.main) Deno.exit(await main(Deno.args));
