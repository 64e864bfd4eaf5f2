/**
 * Step logging. Lines keep the seeds' `STEP n` markers so a reader can follow the original
 * reports: `12:00:01.123 [ca] STEP 2 issued cert 2 for 1155123456`.
 *
 * Logs go to standard error; standard output is kept for results that scripts capture.
 * Never pass a key or a session key to a logger. Every line passes through `printable()`, so a
 * peer's text inside it (an ID, a CN, a version string, a refusal) can neither forge a second log
 * line nor send escape sequences to the terminal, whichever call site logged it.
 */

import { printable } from "./text.ts";

export type LogSink = (line: string) => void;

const encoder = new TextEncoder();

let stderrGone = false;

/**
 * Writes a line to standard error, synchronously so that lines never interleave mid-line. A
 * standard error that went away (`serve 2>&1 | head -2`: a broken pipe) silences the log; it
 * never stops the server.
 */
export const stderrSink: LogSink = (line) => {
  if (stderrGone) return;
  const bytes = encoder.encode(line + "\n");
  try {
    for (let off = 0; off < bytes.length;) off += Deno.stderr.writeSync(bytes.subarray(off));
  } catch {
    stderrGone = true;
  }
};

export interface LoggerOptions {
  sink?: LogSink;
  /** Only warnings and errors. */
  quiet?: boolean;
  /** Leave out the time stamp (for stable test output). */
  noTime?: boolean;
}

export class StepLog {
  readonly actor: string;
  readonly #sink: LogSink;
  readonly #quiet: boolean;
  readonly #noTime: boolean;

  constructor(actor: string, options: LoggerOptions = {}) {
    this.actor = actor;
    this.#sink = options.sink ?? stderrSink;
    this.#quiet = options.quiet ?? false;
    this.#noTime = options.noTime ?? false;
  }

  /** A line for one of the seeds' steps. */
  step(n: number | string, text: string): void {
    if (!this.#quiet) this.#emit(`STEP ${n} ${text}`);
  }

  info(text: string): void {
    if (!this.#quiet) this.#emit(text);
  }

  warn(text: string): void {
    this.#emit(`WARNING ${text}`);
  }

  error(text: string): void {
    this.#emit(`ERROR ${text}`);
  }

  /** A logger for one connection: `[ca #3]`. */
  child(suffix: string): StepLog {
    return new StepLog(`${this.actor} ${suffix}`, {
      sink: this.#sink,
      quiet: this.#quiet,
      noTime: this.#noTime,
    });
  }

  #emit(text: string): void {
    const time = this.#noTime ? "" : new Date().toISOString().slice(11, 23) + " ";
    this.#sink(`${time}[${printable(this.actor)}] ${printable(text)}`);
  }
}

/** The message of an unknown thrown value, for one log line. */
export function errorMessage(err: unknown): string {
  if (err instanceof Error) return err.message;
  return String(err);
}
