/**
 * What every attack of Trudy's shares: a verdict, and the line that ends each run.
 */

export interface Verdict {
  succeeded: boolean;
  /** What Trudy obtained, or why the attack failed. */
  detail: string;
}

export const ATTACK_SUCCEEDED = "ATTACK SUCCEEDED";
export const ATTACK_FAILED = "ATTACK FAILED";

/** `ATTACK SUCCEEDED: …` or `ATTACK FAILED: <why>`. */
export function verdictLine(verdict: Verdict): string {
  return `${verdict.succeeded ? ATTACK_SUCCEEDED : ATTACK_FAILED}: ${verdict.detail}`;
}

/** Exit status of an attack run: 0 when it succeeded, 3 when the defence held. */
export function verdictStatus(verdict: Verdict): number {
  return verdict.succeeded ? 0 : 3;
}
