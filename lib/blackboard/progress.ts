/**
 * A progress bar for uploads on standard error: redrawn in place on a terminal (at most ten times
 * a second), or a line every 10 % when standard error is a file or a pipe.
 */

export interface ProgressOptions {
  /** Write function (default: standard error). */
  write?: (text: string) => void;
  /** Redraw in place (default: whether standard error is a terminal). */
  tty?: boolean;
  label?: string;
  /** The terminal's width in columns (default: asked of the terminal, else 80). */
  columns?: () => number;
}

import { formatBytes } from "../runtime/mod.ts";

const encoder = new TextEncoder();

export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #label: string;
  readonly #columns: () => number;
  readonly #start = performance.now();
  #lastDraw = 0;
  #lastDecile = -1;
  #first: number | undefined;
  #done = false;

  constructor(options: ProgressOptions = {}) {
    this.#write = options.write ?? ((t) => Deno.stderr.writeSync(encoder.encode(t)));
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
    this.#label = options.label ?? "upload";
    this.#columns = options.columns ?? terminalColumns;
  }

  update(sent: number, total: number): void {
    if (this.#done) return;
    this.#first ??= sent;
    const fraction = total === 0 ? 1 : sent / total;
    const now = performance.now();
    const finished = sent >= total;
    if (this.#tty) {
      if (!finished && now - this.#lastDraw < 100) return;
      this.#lastDraw = now;
      const seconds = Math.max((now - this.#start) / 1000, 0.001);
      const rate = (sent - this.#first) / seconds;
      const figures = `${(fraction * 100).toFixed(0).padStart(3)}% ${formatBytes(sent)} / ${
        formatBytes(total)
      } ${formatBytes(rate)}/s`;
      // The whole line fits the terminal (one column spare, so it never wraps): the bar takes
      // what is left, up to 30 columns, and goes when there is no room for 5.
      const room = this.#columns() - 1 - this.#label.length - figures.length - 4;
      const width = Math.min(30, room);
      const bar = width >= 5
        ? ` [${"#".repeat(Math.round(fraction * width))}${
          ".".repeat(width - Math.round(fraction * width))
        }]`
        : "";
      // Cut to the width if even the figures do not fit; \x1b[K clears what a longer earlier line
      // left on the right.
      const line = `${this.#label}${bar} ${figures}`.slice(0, Math.max(1, this.#columns() - 1));
      this.#write(`\r${line}\x1b[K`);
      if (finished) {
        this.#write("\n");
        this.#done = true;
      }
      return;
    }
    const decile = Math.floor(fraction * 10);
    if (decile === this.#lastDecile) return;
    this.#lastDecile = decile;
    this.#write(
      `${this.#label}: ${decile * 10}% (${formatBytes(sent)} of ${formatBytes(total)})\n`,
    );
    if (finished) this.#done = true;
  }

  /** Ends the bar's line where it stands (before an error is printed under it). */
  interrupt(): void {
    if (this.#done) return;
    this.#done = true;
    if (this.#tty && this.#lastDraw > 0) this.#write("\n");
  }
}

/** The terminal's width, from standard error's terminal; 80 when it cannot be asked. */
function terminalColumns(): number {
  try {
    return Deno.consoleSize().columns || 80;
  } catch {
    return 80;
  }
}
