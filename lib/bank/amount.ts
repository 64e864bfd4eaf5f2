/**
 * Money as integer cents: the one parser of amounts that Alice (before anything is sent) and Bob
 * (on every request) both use, and its formatter. Never floating point.
 */

import { printable } from "../runtime/mod.ts";

/** Amounts must be under this: 1,000,000.00. */
export const MAX_AMOUNT_CENTS = 100_000_000;
/** A balance never exceeds this (10,000,000,000.00), far inside a safe integer. */
export const MAX_BALANCE_CENTS = 1_000_000_000_000;

/** An amount that is not a positive number of cents under the maximum; the message says why. */
export class AmountError extends RangeError {
  override name = "AmountError";
}

/**
 * The whole grammar: ASCII digits, then optionally a dot and one or two ASCII digits. Nothing
 * around it: no spaces, no line break, no other Unicode digit or space (`$` without the `m` flag
 * matches only at the very end).
 */
const PLAIN = /^([0-9]{1,12})(?:\.([0-9]{1,2}))?$/;

/**
 * Parses an amount like `10`, `10.5` or `10.50` into cents. Only the grammar above is accepted:
 * surrounding spaces (ASCII or not), line breaks, signs, exponents, more than two decimals, zero,
 * and anything not under `MAX_AMOUNT_CENTS` are refused. The text comes from a peer on Bob's side:
 * the error shows it through `printable`.
 */
export function parseAmount(text: string): number {
  const t = text;
  const shown = printable(t.length > 20 ? `${t.slice(0, 20)}…` : t);
  // check: amount-not-empty tests/bank/accounts_test.ts
  if (t.trim() === "") throw new AmountError("Invalid amount: it is empty");
  const m = PLAIN.exec(t);
  // check: amount-grammar tests/bank/accounts_test.ts
  if (!m) {
    if (/^[-−]/.test(t)) throw new AmountError(`Invalid amount '${shown}': it must be positive`);
    if (/^\d+\.\d{3,}$/.test(t)) {
      throw new AmountError(`Invalid amount '${shown}': at most two decimals`);
    }
    if (t.trim() !== t) {
      throw new AmountError(
        `Invalid amount '${shown}': spaces or line breaks around the number are not allowed`,
      );
    }
    throw new AmountError(`Invalid amount '${shown}': not a number like 10 or 10.50`);
  }
  const cents = Number(m[1]) * 100 + Number((m[2] ?? "").padEnd(2, "0"));
  // check: amount-positive tests/bank/accounts_test.ts
  if (cents <= 0) throw new AmountError(`Invalid amount '${shown}': it must be positive`);
  // check: amount-under-max tests/bank/accounts_test.ts
  if (cents >= MAX_AMOUNT_CENTS) {
    throw new AmountError(
      `Invalid amount '${shown}': it must be under ${formatCents(MAX_AMOUNT_CENTS)}`,
    );
  }
  return cents;
}

/** `1050` → `10.50`. */
export function formatCents(cents: number): string {
  const sign = cents < 0 ? "-" : "";
  const abs = Math.abs(cents);
  return `${sign}${Math.floor(abs / 100)}.${String(abs % 100).padStart(2, "0")}`;
}
