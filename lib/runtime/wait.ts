/**
 * Waiting until a condition holds, for tests and tasks that watch servers and processes:
 *
 *     await waitFor(() => bb.printed.length >= 2, { what: "Blackboard to print both copies" });
 *     await waitFor(() => out.match(/listening on/), { what: "the server", changes, timeoutMs });
 *
 * The condition is checked again each time `changes` says something changed (new output, a new
 * log line, an exit), so a wait ends as soon as the event happens; without `changes` it is checked
 * after a short backoff (5 ms, doubling up to 100 ms). When it does not hold in time, `waitFor`
 * throws a `WaitTimeoutError` naming what it waited for.
 */

export class WaitTimeoutError extends Error {
  override name = "WaitTimeoutError";
}

/** Tells waiters that something changed, so that they check their condition again. */
export class Changes {
  #version = 0;
  readonly #waiters = new Set<() => void>();

  /** How many changes there have been (a waiter compares it before and after its check). */
  get version(): number {
    return this.#version;
  }

  notify(): void {
    this.#version++;
    for (const wake of [...this.#waiters]) wake();
  }

  /** Resolves at the next `notify()`, or after `ms` at the latest; never rejects. */
  next(ms: number): Promise<void> {
    return new Promise((resolve) => {
      const wake = () => {
        clearTimeout(timer);
        this.#waiters.delete(wake);
        resolve();
      };
      const timer = setTimeout(wake, ms);
      this.#waiters.add(wake);
    });
  }
}

export interface WaitOptions {
  /** What is awaited, for the timeout error: `Timed out after 5000 ms waiting for WHAT`. */
  what: string;
  /** Default 5000. */
  timeoutMs?: number;
  /** Check again on each change (event-driven); without it, after a short backoff. */
  changes?: Changes;
  /** More for the timeout error (e.g. the output so far). */
  detail?: () => string;
}

const FIRST_BACKOFF_MS = 5;
const MAX_BACKOFF_MS = 100;

/**
 * Resolves with the condition's first value that is not `false`, `null` or `undefined`; a
 * condition that throws ends the wait with its error.
 */
export async function waitFor<T>(
  condition: () => T | Promise<T>,
  options: WaitOptions,
): Promise<Exclude<T, false | null | undefined>> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const deadline = Date.now() + timeoutMs;
  let backoff = FIRST_BACKOFF_MS;
  for (;;) {
    // A change during an asynchronous check is not missed: the version says it happened.
    const seen = options.changes?.version;
    const value = await condition();
    if (value !== false && value !== null && value !== undefined) {
      return value as Exclude<T, false | null | undefined>;
    }
    const left = deadline - Date.now();
    if (left <= 0) {
      const detail = options.detail?.();
      throw new WaitTimeoutError(
        `Timed out after ${timeoutMs} ms waiting for ${options.what}${detail ? `: ${detail}` : ""}`,
      );
    }
    if (options.changes) {
      if (options.changes.version === seen) await options.changes.next(left);
    } else {
      await new Promise((r) => setTimeout(r, Math.min(backoff, left)));
      backoff = Math.min(backoff * 2, MAX_BACKOFF_MS);
    }
  }
}

/**
 * `promise`, or `"aborted"` as soon as `signal` aborts, whichever comes first. The listener is
 * removed when `promise` settles, so that calling this in a loop keeps nothing alive (a race against
 * one long-lived promise would hold every value it was raced with). A rejection of `promise` after
 * the abort is ignored.
 */
export async function unlessAborted<T>(
  promise: Promise<T>,
  signal: AbortSignal,
): Promise<T | "aborted"> {
  if (signal.aborted) {
    promise.catch(() => {});
    return "aborted";
  }
  let onAbort: (() => void) | undefined;
  const aborted = new Promise<"aborted">((resolve) => {
    onAbort = () => resolve("aborted");
    signal.addEventListener("abort", onAbort, { once: true });
  });
  try {
    const result = await Promise.race([promise, aborted]);
    if (result === "aborted") promise.catch(() => {});
    return result;
  } finally {
    signal.removeEventListener("abort", onAbort!);
  }
}
