/**
 * The upload progress bar: on a terminal it fits the terminal's width (so it never wraps and
 * scrolls), redrawn in place; an interrupted upload ends its line before the error; in a file or a
 * pipe it writes a line every 10 %.
 */

import assert from "node:assert/strict";
import { ProgressBar } from "../../lib/blackboard/mod.ts";

function drawn(columns: number, sent: number, total: number): string {
  let out = "";
  const bar = new ProgressBar({ write: (t) => (out += t), tty: true, columns: () => columns });
  bar.update(sent, total);
  return out;
}

/** The visible text of a redrawn line: after the carriage return, without escape sequences. */
function visible(line: string): string {
  // deno-lint-ignore no-control-regex
  return line.replace(/^\r/, "").replace(/\x1b\[[0-9;]*[A-Za-z]/g, "");
}

Deno.test("progress bar: on a terminal, the line fits its width; the bar shrinks, then goes", () => {
  for (const columns of [200, 80, 60, 50, 40, 30]) {
    const line = visible(drawn(columns, 3 * 1024 ** 2, 8 * 1024 ** 2));
    assert.ok(line.length < columns, `${line.length} columns of ${columns}: ${line}`);
    if (columns >= 40) assert.match(line, /^upload.* 38% 3 MiB \/ 8 MiB /);
  }
  assert.match(visible(drawn(200, 1, 2)), /\[#{15}\.{15}\]/, "30 columns at most");
  assert.doesNotMatch(visible(drawn(30, 1, 2)), /\[/, "no room for a bar: the figures alone");
});

Deno.test("progress bar: interrupted, it ends its line so the error starts on a new one", () => {
  let out = "";
  const bar = new ProgressBar({ write: (t) => (out += t), tty: true, columns: () => 80 });
  bar.update(10, 100);
  bar.interrupt();
  assert.ok(out.endsWith("\n"));
  bar.update(20, 100);
  assert.equal(out.split("\r").length, 2, "nothing drawn after the interruption");
});

Deno.test("progress bar: in a file or a pipe, one line every 10 %", () => {
  let out = "";
  const bar = new ProgressBar({ write: (t) => (out += t), tty: false });
  for (let sent = 0; sent <= 100; sent += 5) bar.update(sent, 100);
  assert.equal(out.trim().split("\n").length, 11);
  assert.match(out, /^upload: 0% \(0 B of 100 B\)\n/);
});
