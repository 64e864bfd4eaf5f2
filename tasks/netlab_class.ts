/** `netlab run class`: to come. */
import type { Topology } from "../lib/netlab/mod.ts";

export function runClass(
  _topo: Topology,
  _options: { keep: boolean; quiet: boolean },
): Promise<number> {
  return Promise.reject(new Error("netlab run class is not built yet"));
}
