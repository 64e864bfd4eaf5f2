/**
 * Driving a joined chat client: interactively (lines from standard input, messages printed with
 * sender and time) or from a script (send these lines, wait for output lines matching those
 * patterns, then quit), for tests, captures and the demo.
 */

import { type ChatClient, formatServerMessage, parseInputLine } from "./client.ts";
import { formatMs } from "../wire/mod.ts";

export type ScriptStep =
  | { readonly send: string }
  | { readonly expect: RegExp }
  | { readonly sleepMs: number };

export interface SessionOptions {
  /** Where each formatted server message goes (standard output in the CLI). */
  print: (line: string) => void;
  /** Where problems with our own input go (standard error in the CLI). */
  warn: (line: string) => void;
}

export interface ScriptOptions extends SessionOptions {
  /** How long each `expect` may wait (default 10 s). */
  timeoutMs?: number;
}

/** How a session ended. */
export interface SessionEnd {
  /** We sent `/quit` (or input ended) and the server let us go. */
  quit: boolean;
  /** The server's last word, when it said one. */
  bye: string | null;
}

/** Reads every server message, prints it and keeps the lines for `expect`. */
class Transcript {
  readonly lines: string[] = [];
  bye: string | null = null;
  ended = false;
  readonly done: Promise<void>;
  #waiters = new Set<() => void>();

  constructor(client: ChatClient, print: (line: string) => void) {
    this.done = (async () => {
      try {
        for await (const msg of client.messages()) {
          const line = formatServerMessage(msg);
          if (msg.type === "bye") this.bye = msg.reason;
          print(line);
          this.lines.push(line);
          this.#notify();
        }
      } catch (err) {
        this.bye ??= err instanceof Error ? err.message : String(err);
      } finally {
        this.ended = true;
        client.close();
        this.#notify();
      }
    })();
  }

  #notify(): void {
    for (const wake of this.#waiters) wake();
  }

  /** Waits for a line at index `from` or later matching `pattern`; returns its index. */
  async waitFor(pattern: RegExp, from: number, timeoutMs: number): Promise<number> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      for (let i = from; i < this.lines.length; i++) {
        if (pattern.test(this.lines[i]!)) return i;
      }
      if (this.ended) {
        throw new Error(`Connection ended while waiting for ${pattern}${this.#byeText()}`);
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(`Timed out after ${formatMs(timeoutMs)} waiting for ${pattern}`);
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(timer);
          this.#waiters.delete(wake);
          resolve();
        };
        const timer = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  #byeText(): string {
    return this.bye ? `: ${this.bye}` : "";
  }
}

/** Sends one input line; false (with a warning) when it is not a valid line. */
async function sendLine(client: ChatClient, line: string, warn: (s: string) => void) {
  const msg = parseInputLine(line);
  if (msg === null) return { sent: false, quit: false };
  if ("problem" in msg) {
    warn(msg.problem);
    return { sent: false, quit: false };
  }
  await client.send(msg);
  return { sent: true, quit: msg.type === "quit" };
}

async function finish(
  client: ChatClient,
  transcript: Transcript,
  quitSent: boolean,
): Promise<SessionEnd> {
  if (!quitSent && !transcript.ended) await client.quit().catch(() => {});
  const timer = setTimeout(() => client.close(), 5000);
  await transcript.done;
  clearTimeout(timer);
  return { quit: true, bye: transcript.bye };
}

/**
 * Runs `steps` in order, then quits. Throws when an `expect` times out or the connection ends
 * first; every message received is printed either way.
 */
export async function runScript(
  client: ChatClient,
  steps: readonly ScriptStep[],
  options: ScriptOptions,
): Promise<SessionEnd> {
  const transcript = new Transcript(client, options.print);
  const timeoutMs = options.timeoutMs ?? 10_000;
  let cursor = 0;
  let quitSent = false;
  try {
    for (const step of steps) {
      if ("send" in step) {
        if (quitSent) throw new Error("Cannot send after /quit");
        const r = await sendLine(client, step.send, options.warn);
        quitSent ||= r.quit;
      } else if ("expect" in step) {
        cursor = (await transcript.waitFor(step.expect, cursor, timeoutMs)) + 1;
      } else {
        await new Promise((r) => setTimeout(r, step.sleepMs));
      }
    }
  } catch (err) {
    client.close();
    await transcript.done;
    throw err;
  }
  return await finish(client, transcript, quitSent);
}

/**
 * Sends each input line until `/quit` or the end of input, printing every message as it comes.
 * Returns when the server has closed the session.
 */
export async function runInteractive(
  client: ChatClient,
  input: AsyncIterable<string>,
  options: SessionOptions,
): Promise<SessionEnd> {
  const transcript = new Transcript(client, options.print);
  const typing = (async () => {
    for await (const line of input) {
      if (transcript.ended) return false;
      const r = await sendLine(client, line, options.warn);
      if (r.quit) return true;
    }
    return false;
  })();
  const first = await Promise.race([typing, transcript.done.then(() => null)]);
  if (first === null) return { quit: false, bye: transcript.bye };
  return await finish(client, transcript, first);
}

/** Splits a byte stream into lines (without their ends); a line over `maxLine` is cut. */
export async function* readLines(
  stream: ReadableStream<Uint8Array>,
  maxLine = 64 * 1024,
): AsyncGenerator<string> {
  let pending = "";
  for await (const chunk of stream.pipeThrough(new TextDecoderStream())) {
    pending += chunk;
    let nl: number;
    while ((nl = pending.indexOf("\n")) >= 0) {
      yield pending.slice(0, nl).replace(/\r$/, "");
      pending = pending.slice(nl + 1);
    }
    if (pending.length > maxLine) {
      yield pending.slice(0, maxLine);
      pending = "";
    }
  }
  if (pending !== "") yield pending;
}
