/**
 * The chat client's input line on a terminal (raw mode): it keeps what the user is typing, so that
 * a message arriving meanwhile is printed above the input line and the prompt and the typed text
 * are drawn again under it, instead of landing in the middle of them.
 *
 * Keys: printable text, Enter (the line), Backspace, Ctrl-U (clear the line), Ctrl-C (quit),
 * Ctrl-D on an empty line (end of input). Escape sequences (arrows…) and other control
 * characters are ignored.
 */

/** What typed input amounted to. */
export interface Fed {
  /** Lines completed with Enter. */
  lines: string[];
  /** Ctrl-C, or Ctrl-D on an empty line: the user wants to leave. */
  end: "interrupt" | "eof" | null;
}

export class LineEditor {
  readonly #write: (text: string) => void;
  readonly prompt: string;
  #typed = "";
  /** The rest of an escape sequence still to skip. */
  #escape: "none" | "start" | "csi" = "none";

  constructor(write: (text: string) => void, prompt = "> ") {
    this.#write = write;
    this.prompt = prompt;
  }

  /** What the user has typed on the current line. */
  get typed(): string {
    return this.#typed;
  }

  /** Draws the prompt and what is typed (at start: over whatever the line holds). */
  start(): void {
    this.#redraw();
  }

  /** Takes typed characters; echoes them and returns the completed lines. */
  feed(text: string): Fed {
    const lines: string[] = [];
    for (const ch of text) {
      if (this.#escape === "start") {
        this.#escape = ch === "[" || ch === "O" ? "csi" : "none";
        continue;
      }
      if (this.#escape === "csi") {
        // A CSI sequence ends with a letter or '~'.
        if (/[A-Za-z~]/.test(ch)) this.#escape = "none";
        continue;
      }
      switch (ch) {
        case "\x1b":
          this.#escape = "start";
          break;
        case "\r":
        case "\n":
          lines.push(this.#typed);
          this.#typed = "";
          this.#write(`\r\n${this.prompt}`);
          break;
        case "\x7f":
        case "\b":
          if (this.#typed !== "") {
            this.#typed = [...this.#typed].slice(0, -1).join("");
            this.#write("\b \b");
          }
          break;
        case "\x15": // Ctrl-U
          this.#typed = "";
          this.#redraw();
          break;
        case "\x03": // Ctrl-C
          this.#write("\r\n");
          return { lines, end: "interrupt" };
        case "\x04": // Ctrl-D
          if (this.#typed === "") {
            this.#write("\r\n");
            return { lines, end: "eof" };
          }
          break;
        default:
          // Other control characters are not text.
          if (ch < " " || (ch >= "\x7f" && ch <= "\x9f")) break;
          this.#typed += ch;
          this.#write(ch);
      }
    }
    return { lines, end: null };
  }

  /** Prints `line` above the input line, then draws the prompt and the typed text again. */
  print(line: string): void {
    this.#write(`\r\x1b[K${line}\r\n`);
    this.#redraw();
  }

  #redraw(): void {
    this.#write(`\r\x1b[K${this.prompt}${this.#typed}`);
  }
}

/**
 * The lines typed at a raw-mode terminal, through `editor`; ends at Ctrl-C or Ctrl-D (with
 * `/quit` for Ctrl-C, so that the server hears a goodbye) or when the input ends.
 */
export async function* editedLines(
  input: ReadableStream<Uint8Array>,
  editor: LineEditor,
): AsyncGenerator<string> {
  editor.start();
  for await (const text of input.pipeThrough(new TextDecoderStream())) {
    const fed = editor.feed(text);
    yield* fed.lines;
    if (fed.end === "interrupt") {
      yield "/quit";
      return;
    }
    if (fed.end === "eof") return;
  }
}
