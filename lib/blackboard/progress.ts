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
}

import { formatBytes } from "../runtime/mod.ts";

const encoder = new TextEncoder();

export class ProgressBar {
  readonly #write: (text: string) => void;
  readonly #tty: boolean;
  readonly #label: string;
  readonly #start = performance.now();
  #lastDraw = 0;
  #lastDecile = -1;
  #first: number | undefined;
  #done = false;

  constructor(options: ProgressOptions = {}) {
    this.#write = options.write ?? ((t) => Deno.stderr.writeSync(encoder.encode(t)));
    this.#tty = options.tty ?? Deno.stderr.isTerminal();
    this.#label = options.label ?? "upload";
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
      const width = 30;
      const filled = Math.round(fraction * width);
      const seconds = Math.max((now - this.#start) / 1000, 0.001);
      const rate = (sent - this.#first) / seconds;
      this.#write(
        `\r${this.#label} [${"#".repeat(filled)}${".".repeat(width - filled)}] ${
          (fraction * 100).toFixed(0).padStart(3)
        }% ${formatBytes(sent)} / ${formatBytes(total)} ${formatBytes(rate)}/s   `,
      );
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
