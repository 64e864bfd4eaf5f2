/**
 * A headless Chromium for the ladder diagrams: it renders each page's SVG into a PNG beside it,
 * and the tests measure the drawn diagrams in it (lib/wireshark/ladder_svg.ts).
 *
 *     await using browser = await DiagramBrowser.launch();   // throws BrowserMissingError
 *     await browser.png("pcap/captures/bank.svg", "pcap/captures/bank.png", 1200, 900);
 *
 * Chromium runs as a child process of this one (Deno.Command, `--remote-debugging-port=0`), and
 * puppeteer-core's browser build drives it over the DevTools WebSocket with Deno's own WebSocket.
 * So nothing more than `--allow-run=chromium` and loopback is needed: no environment, no read of the
 * executable, no Node.js `ws` (puppeteer's `launch` needs all three). The child gets an empty
 * environment but for HOME and XDG folders inside its profile, a fresh profile folder under
 * `data/browser/` (removed at close), and `--no-sandbox` (the sandbox cannot start as root, and it
 * loads only this lab's own SVG and HTML files).
 */

import type {
  Browser,
  ConnectionTransport,
  Page,
} from "puppeteer-core/internal/puppeteer-core-browser.js";
import { DATA_DIR, ensureDir } from "../runtime/mod.ts";
import { toolState } from "../runtime/mod.ts";

/** Chromium's names, first found wins (Debian: `chromium`; Ubuntu's package: `chromium-browser`). */
export const CHROMIUM_COMMANDS = ["chromium", "chromium-browser"] as const;

/** What to install where Chromium is missing (Debian and Ubuntu). */
export const CHROMIUM_HINT = "apt-get install -y chromium";

/** How long Chromium gets to open its DevTools port. */
export const BROWSER_START_TIMEOUT_MS = 30_000;

/** Where each run's profile folder goes (inside the project: tasks may write only there). */
export const BROWSER_DIR = `${DATA_DIR}/browser`;

export class BrowserMissingError extends Error {
  override name = "BrowserMissingError";
}

/** The first Chromium this process may run (`NAME --version` succeeds), or undefined. */
export async function findChromium(): Promise<string | undefined> {
  return (await chromiumState()).command;
}

/** The Chromium to run, or why there is none. */
async function chromiumState(): Promise<{ command?: string; why: string }> {
  const refused: string[] = [];
  for (const name of CHROMIUM_COMMANDS) {
    const state = await toolState(name);
    if (state === "ok") return { command: name, why: "" };
    if (state === "not-permitted") refused.push(name);
  }
  return {
    why: refused.length > 0
      ? `Chromium may not be run here (Deno's --allow-run does not list ${refused.join(" or ")}, ` +
        "or it was installed after this process started)"
      : `Chromium not found (tried ${CHROMIUM_COMMANDS.join(", ")}): ${CHROMIUM_HINT}`,
  };
}

/** Flags for a quiet, reproducible headless Chromium that reaches no network. */
function chromiumArgs(profile: string): string[] {
  return [
    "--headless",
    "--no-sandbox",
    "--remote-debugging-port=0",
    "--remote-debugging-address=127.0.0.1",
    `--user-data-dir=${profile}`,
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--disable-breakpad",
    "--metrics-recording-only",
    "--password-store=basic",
    "--use-mock-keychain",
    "--mute-audio",
    "--hide-scrollbars",
    "--force-color-profile=srgb",
    "--font-render-hinting=none",
    "about:blank",
  ];
}

/** puppeteer's transport over Deno's WebSocket (one DevTools connection). */
class WebSocketTransport implements ConnectionTransport {
  onmessage?: (message: string) => void;
  onclose?: () => void;
  readonly #ws: WebSocket;

  private constructor(ws: WebSocket) {
    this.#ws = ws;
    ws.onmessage = (e) => this.onmessage?.(String(e.data));
    ws.onclose = () => this.onclose?.();
    ws.onerror = () => {};
  }

  static open(url: string): Promise<WebSocketTransport> {
    return new Promise((resolve, reject) => {
      const ws = new WebSocket(url);
      ws.onopen = () => resolve(new WebSocketTransport(ws));
      ws.onerror = () => reject(new Error(`Cannot connect to Chromium's DevTools at ${url}`));
    });
  }

  send(message: string): void {
    this.#ws.send(message);
  }

  close(): void {
    this.#ws.close();
  }
}

/** Reads Chromium's standard error until its `DevTools listening on ws://…` line. */
async function devToolsUrl(
  stderr: ReadableStream<Uint8Array>,
  exited: Promise<Deno.CommandStatus>,
  timeoutMs: number,
): Promise<{ url: string; drain: Promise<void> }> {
  const reader = stderr.pipeThrough(new TextDecoderStream()).getReader();
  let text = "";
  let timer: ReturnType<typeof setTimeout> | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(
      () => reject(new Error(`Chromium did not open its DevTools port in ${timeoutMs} ms`)),
      timeoutMs,
    );
  });
  try {
    while (true) {
      const { value, done } = await Promise.race([reader.read(), timeout]);
      if (done) {
        const status = await exited;
        throw new Error(
          `Chromium exited (status ${status.code}) before opening its DevTools port: ${
            text.trim().split("\n").slice(-3).join(" / ")
          }`,
        );
      }
      text += value;
      const m = text.match(/DevTools listening on (ws:\/\/\S+)/);
      if (m) {
        // Chromium goes on writing warnings; read them so that its pipe never fills.
        const drain = (async () => {
          while (!(await reader.read()).done) { /* discard */ }
        })().catch(() => {});
        return { url: m[1]!, drain };
      }
    }
  } finally {
    clearTimeout(timer);
  }
}

/** A running headless Chromium and its DevTools connection; dispose (or `close`) to stop it. */
export class DiagramBrowser implements AsyncDisposable {
  readonly browser: Browser;
  /** The command that was run (`chromium`). */
  readonly command: string;
  /** Chromium's version (`HeadlessChrome/…`). */
  readonly version: string;
  readonly #child: Deno.ChildProcess;
  readonly #profile: string;
  readonly #drain: Promise<void>;
  #page: Page | undefined;
  #closed = false;

  private constructor(
    browser: Browser,
    command: string,
    version: string,
    child: Deno.ChildProcess,
    profile: string,
    drain: Promise<void>,
  ) {
    this.browser = browser;
    this.command = command;
    this.version = version;
    this.#child = child;
    this.#profile = profile;
    this.#drain = drain;
  }

  /**
   * Starts Chromium (the first of CHROMIUM_COMMANDS found, or `command`). Throws
   * BrowserMissingError when there is none, or none this process may run.
   */
  static async launch(
    options: { command?: string; profileParent?: string; timeoutMs?: number } = {},
  ): Promise<DiagramBrowser> {
    const found = options.command === undefined ? await chromiumState() : undefined;
    const command = options.command ?? found?.command;
    if (command === undefined) throw new BrowserMissingError(found!.why);
    const parent = options.profileParent ?? BROWSER_DIR;
    await ensureDir(parent);
    const profile = await Deno.makeTempDir({ dir: parent, prefix: "profile-" });
    let child: Deno.ChildProcess | undefined;
    try {
      child = new Deno.Command(command, {
        args: chromiumArgs(profile),
        clearEnv: true,
        env: {
          PATH: "/usr/local/bin:/usr/bin:/bin",
          HOME: profile,
          XDG_CONFIG_HOME: `${profile}/config`,
          XDG_CACHE_HOME: `${profile}/cache`,
          XDG_DATA_HOME: `${profile}/data`,
        },
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
      const { url, drain } = await devToolsUrl(
        child.stderr,
        child.status,
        options.timeoutMs ?? BROWSER_START_TIMEOUT_MS,
      );
      const { connect } = await import("puppeteer-core/internal/puppeteer-core-browser.js");
      const browser = await connect({
        transport: await WebSocketTransport.open(url),
        defaultViewport: null,
      });
      return new DiagramBrowser(browser, command, await browser.version(), child, profile, drain);
    } catch (err) {
      if (child) {
        try {
          child.kill("SIGKILL");
        } catch { /* already gone */ }
        await child.status;
      }
      await Deno.remove(profile, { recursive: true }).catch(() => {});
      throw err;
    }
  }

  /** A new tab. */
  async newPage(): Promise<Page> {
    return await this.browser.newPage();
  }

  /**
   * Renders an SVG file into a PNG file at its own size (`width` × `height` CSS pixels, one device
   * pixel each), as Chromium draws it; the PNG is readable by everyone (0644).
   */
  async png(svgPath: string, pngPath: string, width: number, height: number): Promise<void> {
    this.#page ??= await this.newPage();
    const page = this.#page;
    // A tab behind another is drawn late (Chromium throttles it): this one goes in front.
    await page.bringToFront();
    await page.setViewport({ width, height, deviceScaleFactor: 1 });
    await page.goto(fileUrl(svgPath), { waitUntil: "load" });
    const bytes = await page.screenshot({
      type: "png",
      clip: { x: 0, y: 0, width, height },
      captureBeyondViewport: false,
    });
    await Deno.writeFile(pngPath, bytes, { mode: 0o644 });
    await Deno.chmod(pngPath, 0o644);
  }

  /** Closes the browser, waits for its process and removes its profile. Safe twice. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    const timer = setTimeout(() => {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }, 10_000);
    try {
      await this.browser.close();
    } catch {
      try {
        this.#child.kill("SIGKILL");
      } catch { /* already gone */ }
    }
    await this.#child.status;
    clearTimeout(timer);
    await this.#drain;
    await Deno.remove(this.#profile, { recursive: true }).catch(() => {});
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** A `file://` URL for a path (absolute, or relative to the current folder). */
export function fileUrl(path: string): string {
  const abs = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  return new URL(`file://${abs.split("/").map(encodeURIComponent).join("/")}`).href;
}
