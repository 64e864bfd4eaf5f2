/**
 * Packet capture on the loopback interface, for captures that decrypt themselves in Wireshark.
 *
 *     await using cap = await Capture.start({ ports: [9335, 3141], workDir });
 *     // … start the actors with SSLKEYLOGFILE = cap.keyLogPath, run the traffic …
 *     const file = await cap.finish("pcap/captures/upload.pcapng");
 *
 * `dumpcap` captures only the scenario's TCP ports. `start` returns once dumpcap has printed its
 * `File:` line (the capture is live), so no packet of the scenario is missed. `finish` stops it with
 * SIGINT (never SIGKILL: the file must be complete), then `editcap --inject-secrets tls,KEYLOG`
 * embeds the TLS key log into the pcapng so that Wireshark and tshark decrypt it with no set-up.
 * `finish(out, { rawTwin })` also writes the same packets with no keys embedded (a TLS scenario's
 * `SCENARIO.raw.pcapng`): what Wireshark shows without keys, "Encrypted Handshake Message" and all,
 * as in the seed's screenshot. The results are readable by everyone (0644): they are meant to be
 * opened by the user running Wireshark, who may not be root. The key log itself stays private
 * (0600) and is deleted.
 */

import { toHex } from "../crypto/mod.ts";
import {
  aptInstall,
  denoCommand,
  ensureDir,
  exists,
  hasTool,
  runCommand,
  toolState,
} from "../runtime/mod.ts";

/** Tools the capture needs, all from Wireshark's command-line package (`tshark`). */
export const CAPTURE_TOOLS = ["dumpcap", "editcap", "tshark"] as const;

/** How long dumpcap gets to say that the capture is live. */
export const CAPTURE_START_TIMEOUT_MS = 15_000;
/** How long dumpcap gets to write out its file after SIGINT. */
export const CAPTURE_STOP_TIMEOUT_MS = 15_000;
/** How long dumpcap gets to catch up with the traffic (to write the end sentinel) at `stop`. */
export const CAPTURE_CATCH_UP_TIMEOUT_MS = 20_000;
/**
 * The UDP port of the end sentinel (discard): each capture's filter takes it besides the scenario's
 * TCP ports, and the sentinel is removed from the file before anyone reads it.
 */
export const SENTINEL_PORT = 9;

export class CaptureError extends Error {
  override name = "CaptureError";
}

/** The capture tools that are missing, in `CAPTURE_TOOLS` order. */
export async function missingCaptureTools(): Promise<string[]> {
  const missing: string[] = [];
  for (const tool of CAPTURE_TOOLS) {
    if (!(await hasTool(tool))) missing.push(tool);
  }
  return missing;
}

/** `n` distinct free ports, none of them in `avoid`. */
export function freePorts(n: number, avoid: ReadonlySet<number> = new Set()): number[] {
  const listeners: Deno.TcpListener[] = [];
  const picked: number[] = [];
  try {
    while (picked.length < n) {
      if (listeners.length > n + 1000) throw new CaptureError("Cannot find enough free ports");
      const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
      listeners.push(l);
      if (!avoid.has(l.addr.port)) picked.push(l.addr.port);
    }
    return picked;
  } finally {
    for (const l of listeners) l.close();
  }
}

let registered: Promise<Set<number>> | undefined;

/**
 * The TCP ports Wireshark decodes as some protocol by default (`tshark -G decodes`, e.g. 44321 as
 * PCP). A lab server on a free port that happens to be one of them would be dissected as that
 * protocol instead of by pcap/lab.lua's heuristic, so capture scenarios avoid them. Empty when
 * tshark cannot say.
 */
export function wiresharkTcpPorts(): Promise<Set<number>> {
  registered ??= (async () => {
    try {
      const out = await new Deno.Command("tshark", {
        args: ["-G", "decodes"],
        stdin: "null",
        stdout: "piped",
        stderr: "null",
      }).output();
      const ports = new Set<number>();
      for (const line of new TextDecoder().decode(out.stdout).split("\n")) {
        const [table, port] = line.split("\t");
        if (table === "tcp.port" && port !== undefined) ports.add(Number(port));
      }
      return ports;
    } catch {
      return new Set<number>();
    }
  })();
  return registered;
}

/** The BPF capture filter for a set of TCP ports: `tcp port 9335 or tcp port 3141`. */
export function portFilter(ports: readonly number[]): string {
  if (ports.length === 0) throw new RangeError("A capture needs at least one port");
  for (const p of ports) {
    if (!Number.isInteger(p) || p < 1 || p > 65535) throw new RangeError(`Bad port ${p}`);
  }
  return [...new Set(ports)].map((p) => `tcp port ${p}`).join(" or ");
}

export interface CaptureOptions {
  /** TCP ports to capture (either direction). */
  ports: readonly number[];
  /** A private working directory for the raw capture and the key log (created 0700). */
  workDir: string;
  /** Interface (default `lo`). */
  interface?: string;
  /** Several interfaces into one file (instead of `interface`), each with the same filter. */
  interfaces?: readonly string[];
  /** ANDed to the ports' filter (the netlab's `ip[8] = 64`: each packet once, as it arrived). */
  extraFilter?: string;
  /** A command that runs dumpcap for us (`ip netns exec seclab-trudy`: capture in her namespace). */
  wrapper?: readonly string[];
  /**
   * Where the end sentinels go, one address per captured interface, so that each crosses its own
   * (default 127.0.0.1, through lo). Sent through `wrapper` too.
   */
  sentinels?: readonly string[];
}

/**
 * dumpcap writes several interfaces' packets in blocks, one interface after another, not in time
 * order; tshark's TCP analysis follows the file's order, so such a capture is put in time order
 * (`reordercap`, from the same package as editcap) before anything reads it.
 */
async function reorder(raw: string): Promise<void> {
  const sorted = `${raw}.sorted`;
  const res = await new Deno.Command("reordercap", {
    args: [raw, sorted],
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) {
    throw new CaptureError(`reordercap failed: ${new TextDecoder().decode(res.stderr).trim()}`);
  }
  await Deno.rename(sorted, raw);
}

/** Bytes of a file from `offset` on (none when the file is not there yet). */
async function readFrom(path: string, offset: number): Promise<Uint8Array> {
  let file: Deno.FsFile;
  try {
    file = await Deno.open(path, { read: true });
  } catch {
    return new Uint8Array();
  }
  try {
    await file.seek(offset, Deno.SeekMode.Start);
    return new Uint8Array(await new Response(file.readable).arrayBuffer());
  } catch {
    file.close();
    return new Uint8Array();
  }
}

/**
 * How many times `needle` occurs in `haystack`, a sentinel's token being counted once even where a
 * look overlapped the previous one by less than its length.
 */
export function countOf(haystack: Uint8Array, needle: Uint8Array): number {
  let count = 0;
  outer: for (let i = 0; i + needle.length <= haystack.length; i++) {
    for (let k = 0; k < needle.length; k++) {
      if (haystack[i + k] !== needle[k]) continue outer;
    }
    count++;
    i += needle.length - 1;
  }
  return count;
}

/** Deletes the end sentinels (UDP to the discard port) from a raw capture, in place. */
async function removeSentinels(raw: string): Promise<void> {
  const found = await runCommand("tshark", [
    "-r",
    raw,
    "-Y",
    `udp.dstport == ${SENTINEL_PORT}`,
    "-T",
    "fields",
    "-e",
    "frame.number",
  ], { timeoutMs: 60_000 });
  if (found.code !== 0) {
    throw new CaptureError(`tshark could not read ${raw}: ${found.stderr.trim()}`);
  }
  const frames = found.stdout.split("\n").filter((l) => /^\d+$/.test(l));
  if (frames.length === 0) return;
  const clean = `${raw}.clean`;
  const res = await runCommand("editcap", [raw, clean, ...frames], { timeoutMs: 60_000 });
  if (res.code !== 0) throw new CaptureError(`editcap failed: ${res.stderr.trim()}`);
  await Deno.rename(clean, raw);
}

export interface CaptureResult {
  /** The pcapng written. */
  path: string;
  /** Whether a non-empty TLS key log was embedded. */
  secrets: boolean;
  /** The raw twin (the same packets, no keys embedded), when one was asked for. */
  raw?: string;
}

export interface FinishOptions {
  /**
   * Also write the same packets here with no keys embedded (`SCENARIO.raw.pcapng`): Wireshark
   * shows it as a capture made without the key log, as the seed's was.
   */
  rawTwin?: string;
}

/** A running dumpcap. Dispose it to stop it (SIGINT) if `finish` was not reached. */
export class Capture implements AsyncDisposable {
  readonly rawPath: string;
  /** Give this to the TLS actors as SSLKEYLOGFILE (Deno reads it once, at process start). */
  readonly keyLogPath: string;
  readonly filter: string;
  /** Several interfaces: the packets are put in time order at `finish`. */
  #reorder = false;
  #wrapper: readonly string[] = [];
  #sentinels: readonly string[] = [];
  readonly #child: Deno.ChildProcess;
  readonly #status: Promise<Deno.CommandStatus>;
  #stderr = "";
  #stopped: Promise<void> | undefined;

  private constructor(
    child: Deno.ChildProcess,
    rawPath: string,
    keyLogPath: string,
    filter: string,
  ) {
    this.#child = child;
    this.rawPath = rawPath;
    this.keyLogPath = keyLogPath;
    this.filter = filter;
    this.#status = child.status;
  }

  /** What dumpcap printed on standard error so far. */
  get log(): string {
    return this.#stderr;
  }

  /** Starts dumpcap and waits until it reports the capture file (the capture is live). */
  static async start(options: CaptureOptions): Promise<Capture> {
    const ports = `${portFilter(options.ports)} or udp dst port ${SENTINEL_PORT}`;
    const filter = options.extraFilter ? `(${ports}) and (${options.extraFilter})` : ports;
    await ensureDir(options.workDir, 0o700);
    await Deno.chmod(options.workDir, 0o700);
    const rawPath = `${options.workDir}/raw.pcapng`;
    const keyLogPath = `${options.workDir}/tls-keys.log`;
    // Created empty and private before any TLS actor appends to it.
    await Deno.writeFile(keyLogPath, new Uint8Array(), { mode: 0o600 });
    await Deno.chmod(keyLogPath, 0o600);
    let child: Deno.ChildProcess;
    try {
      const interfaces = options.interfaces ?? [options.interface ?? "lo"];
      const [command, ...args] = [
        ...(options.wrapper ?? []),
        "dumpcap",
        ...interfaces.flatMap((i) => ["-i", i, "-f", filter]),
        "-w",
        rawPath,
      ];
      child = new Deno.Command(command!, {
        args,
        stdin: "null",
        stdout: "null",
        stderr: "piped",
      }).spawn();
    } catch (err) {
      throw new CaptureError(
        `Cannot start dumpcap: ${err instanceof Error ? err.message : String(err)}` +
          " (run 'deno task setup')",
      );
    }
    const capture = new Capture(child, rawPath, keyLogPath, filter);
    capture.#reorder = (options.interfaces?.length ?? 1) > 1;
    capture.#wrapper = options.wrapper ?? [];
    capture.#sentinels = options.sentinels ?? ["127.0.0.1"];
    await capture.#waitUntilLive();
    return capture;
  }

  async #waitUntilLive(): Promise<void> {
    const reader = this.#child.stderr.pipeThrough(new TextDecoderStream()).getReader();
    let live = false;
    const timer = setTimeout(() => {
      if (!live) this.#kill("SIGINT");
    }, CAPTURE_START_TIMEOUT_MS);
    try {
      while (!live) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#stderr += value;
        live = /^File: /m.test(this.#stderr);
      }
    } finally {
      clearTimeout(timer);
    }
    // Keep draining standard error so that dumpcap never blocks on a full pipe.
    (async () => {
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        this.#stderr += value;
      }
    })().catch(() => {});
    if (!live) {
      await this.#status;
      const lines = this.#stderr.trim().split("\n");
      const reason = lines.find((l) => l.startsWith("dumpcap: "))?.slice(9) ?? lines.pop() ??
        "no output";
      const hint = /permission|privilege|not permitted/i.test(this.#stderr)
        ? " (capturing on lo needs root or the wireshark group: see 'deno task setup')"
        : "";
      throw new CaptureError(
        `dumpcap did not start capturing (filter '${this.filter}'): ${reason}${hint}`,
      );
    }
  }

  #kill(signal: Deno.Signal): void {
    try {
      this.#child.kill(signal);
    } catch {
      // Already exited.
    }
  }

  /**
   * Stops dumpcap and waits until it has closed the file. Safe to call twice.
   *
   * dumpcap drops, on SIGINT, every packet the kernel holds for it that it has not read yet, and
   * counts none of them as dropped: on a loaded machine, where it runs late, the last connections
   * of a scenario went missing from the file without a word. So, after a short pause for the last
   * packets in flight (a delayed ACK), a sentinel datagram is sent through each captured interface
   * and dumpcap is stopped only once every sentinel is in its file: the kernel hands packets over in
   * order, so everything before them is there too. The sentinels are removed at `finish`.
   */
  stop(): Promise<void> {
    this.#stopped ??= (async () => {
      await new Promise((r) => setTimeout(r, 100));
      let caughtUp: unknown;
      try {
        await this.#catchUp();
      } catch (err) {
        caughtUp = err;
      }
      this.#kill("SIGINT");
      const timer = setTimeout(() => this.#kill("SIGTERM"), CAPTURE_STOP_TIMEOUT_MS);
      try {
        await this.#status;
      } finally {
        clearTimeout(timer);
      }
      if (caughtUp !== undefined) throw caughtUp;
    })();
    return this.#stopped;
  }

  /** A token per capture: its sentinels carry it, and it appears nowhere else. */
  readonly #token = `lab-capture-end-${toHex(crypto.getRandomValues(new Uint8Array(12)))}`;

  /**
   * Sends the sentinels (one per interface, each with its own index after the token) and waits
   * until dumpcap has written every one of them: the sentinel of an idle interface seen twice must
   * not stand for that of a busy one.
   */
  async #catchUp(): Promise<void> {
    const tokens = this.#sentinels.map((_, i) => new TextEncoder().encode(`${this.#token}-${i}.`));
    const seen = tokens.map(() => false);
    const longest = Math.max(...tokens.map((t) => t.length));
    const started = Date.now();
    let nextSend = started;
    let offset = 0;
    let exited = false;
    this.#status.then(() => exited = true, () => exited = true);
    for (;;) {
      // Sent again every second: a datagram may be lost on a busy machine.
      if (Date.now() >= nextSend) {
        nextSend += 1000;
        await Promise.all(
          this.#sentinels.map((to, i) => seen[i] ? undefined : this.#sendSentinel(to, i)),
        );
      }
      // Only what dumpcap wrote since the last look (and a token's length before, for a token
      // cut in two by the last look), so that a large capture is not read again and again.
      const from = Math.max(0, offset - longest + 1);
      const fresh = await readFrom(this.rawPath, from);
      tokens.forEach((t, i) => seen[i] ||= countOf(fresh, t) > 0);
      offset = from + fresh.length;
      if (seen.every(Boolean)) return;
      if (exited) {
        throw new CaptureError(
          `dumpcap stopped before the end of the capture: ${this.#stderr.trim() || "no output"}`,
        );
      }
      if (Date.now() - started >= CAPTURE_CATCH_UP_TIMEOUT_MS) {
        throw new CaptureError(
          `dumpcap had not written the end of the capture after ${
            CAPTURE_CATCH_UP_TIMEOUT_MS / 1000
          } s (its end sentinel through ${
            this.#sentinels.filter((_, i) => !seen[i]).join(", ")
          } is not in the file): stopping it now would lose the last packets`,
        );
      }
      await new Promise((r) => setTimeout(r, 20));
    }
  }

  /** One sentinel datagram to `to`, sent from dumpcap's namespace (Deno's node:dgram). */
  async #sendSentinel(to: string, index: number): Promise<void> {
    const [command, ...args] = [
      ...this.#wrapper,
      denoCommand(),
      "eval",
      "--quiet",
      'import dgram from "node:dgram"; const [text, host, port] = Deno.args; ' +
      'const s = dgram.createSocket("udp4"); ' +
      "s.send(new TextEncoder().encode(text), Number(port), host, (err) => { s.close(); " +
      "if (err) { console.error(err.message); Deno.exit(1); } });",
      `${this.#token}-${index}.`,
      to,
      String(SENTINEL_PORT),
    ];
    const res = await runCommand(command!, args, { timeoutMs: 20_000 }).catch((err) => {
      throw new CaptureError(`Cannot send the capture's end sentinel: ${err.message}`);
    });
    if (res.code !== 0) {
      throw new CaptureError(
        `Cannot send the capture's end sentinel to ${to}: ${res.stderr.trim().split("\n").pop()}`,
      );
    }
  }

  /**
   * Stops the capture and writes `out` (pcapng, mode 0644) with the TLS key log embedded when
   * there is one, and `options.rawTwin` without it. The raw capture and the key log are removed
   * afterwards.
   */
  async finish(out: string, options: FinishOptions = {}): Promise<CaptureResult> {
    await this.stop();
    if (!(await exists(this.rawPath))) {
      throw new CaptureError(`dumpcap wrote no capture file: ${this.#stderr.trim()}`);
    }
    await removeSentinels(this.rawPath);
    if (this.#reorder) await reorder(this.rawPath);
    const result: CaptureResult = await embedSecrets(this.rawPath, this.keyLogPath, out);
    if (options.rawTwin !== undefined) {
      result.raw = await writeWithoutSecrets(this.rawPath, options.rawTwin);
    }
    await Deno.remove(this.rawPath).catch(() => {});
    await Deno.remove(this.keyLogPath).catch(() => {});
    return result;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop();
    await Deno.remove(this.keyLogPath).catch(() => {});
  }
}

/**
 * Writes `out` from the capture `raw`, embedding the TLS key log `keyLog` (a Decryption Secrets
 * Block) when it is not empty. `out` ends up with mode 0644 in a directory that is created 0755.
 */
export async function embedSecrets(
  raw: string,
  keyLog: string,
  out: string,
): Promise<CaptureResult> {
  const keys = await Deno.stat(keyLog).then((s) => s.size).catch(() => 0);
  await editcap(keys > 0 ? ["--inject-secrets", `tls,${keyLog}`] : [], raw, out);
  return { path: out, secrets: keys > 0 };
}

/**
 * Writes `out` from the capture `raw` with no decryption secrets (the raw twin of a TLS capture),
 * mode 0644, in a directory created 0755; returns `out`.
 */
export async function writeWithoutSecrets(raw: string, out: string): Promise<string> {
  await editcap([], raw, out);
  return out;
}

/** `editcap OPTIONS -F pcapng raw out`, through a temporary file; `out` ends up 0644. */
async function editcap(options: readonly string[], raw: string, out: string): Promise<void> {
  const dir = out.includes("/") ? out.slice(0, out.lastIndexOf("/")) : ".";
  await ensureDir(dir, 0o755);
  const tmp = `${out}.tmp`;
  const args = [...options, "-F", "pcapng", raw, tmp];
  const res = await new Deno.Command("editcap", {
    args,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  if (!res.success) {
    await Deno.remove(tmp).catch(() => {});
    throw new CaptureError(
      `editcap failed: ${new TextDecoder().decode(res.stderr).trim() || `status ${res.code}`}`,
    );
  }
  await Deno.chmod(tmp, 0o644);
  await Deno.rename(tmp, out);
}

/** Exactly how to install the capture tools by hand, for the usual systems. */
export const INSTALL_HINT = `Install Wireshark's command-line tools (tshark, dumpcap, editcap):
  Debian, Ubuntu:  sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y tshark
  Fedora, RHEL:    sudo dnf install -y wireshark-cli
  Arch:            sudo pacman -S --needed wireshark-cli
  macOS:           brew install wireshark
Capturing on 'lo' needs root, or (Debian, Ubuntu) 'sudo dpkg-reconfigure wireshark-common'
(answer Yes) then 'sudo usermod -aG wireshark $USER' and log in again.`;

function isRoot(): boolean {
  try {
    return Deno.uid() === 0;
  } catch {
    return false;
  }
}

export interface EnsureToolsOptions {
  /** Install with apt-get when root (default true). */
  install?: boolean;
  /** Progress and instructions. */
  print: (line: string) => void;
}

/**
 * Makes sure tshark, dumpcap and editcap are there: installs them with apt-get when running as
 * root on a Debian-like system, otherwise prints exactly how. Returns whether they are ready.
 */
export async function ensureCaptureTools(options: EnsureToolsOptions): Promise<boolean> {
  let missing = await missingCaptureTools();
  if (missing.length === 0) return true;
  options.print(`Missing: ${missing.join(", ")}`);
  if ((options.install ?? true) && isRoot() && await hasTool("apt-get")) {
    options.print("Installing tshark with apt-get (running as root)…");
    const failed = await aptInstall(["tshark"]);
    if (failed !== undefined) options.print(failed);
    const states = await Promise.all(CAPTURE_TOOLS.map((tool) => toolState(tool)));
    missing = CAPTURE_TOOLS.filter((_, i) => states[i] === "missing");
    if (missing.length === 0) {
      options.print(
        states.every((st) => st === "ok")
          ? "Installed tshark, dumpcap and editcap"
          : "Installed tshark, dumpcap and editcap (run the task again to use them: this one may " +
            "only run the programs that existed when it started)",
      );
      return true;
    }
  }
  options.print(INSTALL_HINT);
  return false;
}
