/** `netlab run SCENARIO`: filled in next. */
export const NETLAB_SCENARIOS = ["upload"] as const;
export function runNetlab(_args: string[]): Promise<number | void> {
  return Promise.resolve(1);
}
