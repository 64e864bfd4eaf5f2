/**
 * The chat client (system 3): connects over TLS, joins with a nickname, sends lines (`/who`,
 * `/msg NICK text`, `/quit`, anything else is broadcast), and yields the server's messages. Keeps
 * the connection alive with pings at a third of the server's idle deadline, and reads with a
 * deadline so that a dead server is noticed.
 */

import { DeadlineError, FramedStream } from "../wire/mod.ts";
import {
  charCount,
  CHAT_NAME,
  type ClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  MAX_NICK,
  MAX_TEXT,
  nickProblem,
  QUIT_GOODBYE,
  SERVER_MAX_FRAME,
  type ServerMessage,
} from "./protocol.ts";
import { connectTls, type TlsConnectOptions } from "../net/mod.ts";
import { printable } from "../runtime/mod.ts";

/** The server refused to let us join, or closed the session: `reason` is its `bye`. */
export class ChatRefusedError extends Error {
  override name = "ChatRefusedError";
}

export interface JoinOptions extends Omit<TlsConnectOptions, "serverName"> {
  nick: string;
  /**
   * The name the server's certificate must carry (default `chat`, the service's name), whatever
   * address `hostname` is.
   */
  serverName?: string;
  /** Deadline for the server's welcome after the handshake (default 10 s). */
  welcomeTimeoutMs?: number;
  /** Send pings to stay joined while idle (default true). */
  keepAlive?: boolean;
}

type Welcome = Extract<ServerMessage, { type: "welcome" }>;

/** Parses one input line into the message it sends, or returns a usage problem. */
export function parseInputLine(line: string): ClientMessage | { problem: string } | null {
  const text = line.replace(/\r$/, "");
  if (text.trim() === "") return null;
  const n = charCount(text);
  // The server sets its own, lower limit; this one is what the protocol can carry at all.
  if (n > MAX_TEXT) return { problem: `Message too long: ${n} characters (limit ${MAX_TEXT})` };
  if (!text.startsWith("/")) return { type: "say", text };
  const m = /^\/(\S+)\s*(.*)$/s.exec(text)!;
  const command = m[1]!;
  const rest = m[2]!;
  switch (command) {
    case "who":
      return { type: "who" };
    case "quit":
      return { type: "quit" };
    case "msg": {
      const mm = /^(\S+)\s+(.+)$/s.exec(rest);
      if (!mm) return { problem: "Usage: /msg NICK text" };
      return { type: "msg", to: mm[1]!, text: mm[2]! };
    }
    case "say":
      return rest === "" ? null : { type: "say", text: rest };
    default:
      return {
        problem: `Unknown command /${printable(command)} (/who, /msg NICK text, /quit, /say text)`,
      };
  }
}

/** One line of output for a server message: `12:00:01 <alice> hi`. */
export function formatServerMessage(msg: ServerMessage, now = Date.now()): string {
  const time = (ms: number) => new Date(ms).toISOString().slice(11, 19);
  const p = printable;
  switch (msg.type) {
    case "welcome":
      return `${time(now)} * joined as ${p(msg.nick)}; online (${msg.users.length}): ${
        msg.users.map(p).join(", ")
      }`;
    case "joined":
      return `${time(msg.time)} * ${p(msg.nick)} joined`;
    case "left":
      return `${time(msg.time)} * ${p(msg.nick)} left (${p(msg.reason)})`;
    case "said":
      return `${time(msg.time)} <${p(msg.from)}> ${p(msg.text)}`;
    case "private":
      return `${time(msg.time)} [private] <${p(msg.from)} -> ${p(msg.to)}> ${p(msg.text)}`;
    case "users":
      return `${time(now)} * online (${msg.users.length}): ${msg.users.map(p).join(", ")}`;
    case "pong":
      return `${time(now)} * pong`;
    case "error":
      return `${time(now)} ! ${p(msg.reason)}`;
    case "bye":
      // After the user's own /quit, the server's goodbye is no error.
      return msg.reason === QUIT_GOODBYE
        ? `${time(now)} * you left the chat. Goodbye`
        : `${time(now)} ! disconnected by the server: ${p(msg.reason)}`;
  }
}

/** A joined chat session. */
export class ChatClient {
  readonly nick: string;
  readonly welcome: Welcome;
  /** The negotiated TLS version (or what is known of it) and cipher suite. */
  readonly protocol: string;
  readonly cipher: string | null;
  readonly #framed: FramedStream;
  #ping: ReturnType<typeof setInterval> | undefined;
  #sendChain: Promise<void> = Promise.resolve();

  private constructor(
    framed: FramedStream,
    welcome: Welcome,
    protocol: string,
    cipher: string | null,
    keepAlive: boolean,
  ) {
    this.#framed = framed;
    this.welcome = welcome;
    this.nick = welcome.nick;
    this.protocol = protocol;
    this.cipher = cipher;
    if (keepAlive) {
      this.#ping = setInterval(
        () => this.send({ type: "ping" }).catch(() => this.close()),
        Math.max(100, Math.floor(welcome.idleMs / 3)),
      );
    }
  }

  /**
   * Connects, completes TLS (verifying the server against `caCerts` only, and that its certificate
   * names `serverName`, by default `chat`), sends `hello` and waits for the welcome. Throws
   * `ChatRefusedError` with the server's reason when refused.
   */
  static async join(options: JoinOptions): Promise<ChatClient> {
    // The server decides what a valid nickname is; one too long to send at all stops here.
    if (charCount(options.nick) > 2 * MAX_NICK) {
      throw new ChatRefusedError(nickProblem(options.nick)!);
    }
    const { stream, protocol, cipher } = await connectTls({
      ...options,
      serverName: options.serverName ?? CHAT_NAME,
    });
    const framed = new FramedStream(stream, { maxFrame: SERVER_MAX_FRAME });
    try {
      await framed.writeFrame(encodeClientMessage({ type: "hello", nick: options.nick }));
      const payload = await framed.readFrame({ timeoutMs: options.welcomeTimeoutMs ?? 10_000 });
      if (payload === null) throw new ChatRefusedError("Server closed the connection");
      const msg = decodeServerMessage(payload);
      if (msg.type === "bye") throw new ChatRefusedError(msg.reason);
      if (msg.type !== "welcome") throw new Error(`Expected welcome, got ${msg.type}`);
      // Idle deadline for reads: the server answers each ping, so silence means it is gone.
      const client = new ChatClient(framed, msg, protocol, cipher, options.keepAlive ?? true);
      return client;
    } catch (err) {
      framed.close();
      throw err;
    }
  }

  /** Sends one message; sends are kept in order. */
  send(msg: ClientMessage): Promise<void> {
    const payload = encodeClientMessage(msg);
    const next = this.#sendChain.then(() => this.#framed.writeFrame(payload));
    this.#sendChain = next.catch(() => {});
    return next;
  }

  say(text: string): Promise<void> {
    return this.send({ type: "say", text });
  }

  /**
   * The next message from the server (pongs are skipped); `null` when the connection has ended.
   * A `bye` is returned like any message, and the connection then ends.
   */
  async next(): Promise<ServerMessage | null> {
    for (;;) {
      let payload: Uint8Array | null;
      try {
        payload = await this.#framed.readFrame({
          timeoutMs: this.welcome.idleMs + 10_000,
        });
      } catch (err) {
        if (err instanceof DeadlineError) throw new Error("Server silent: connection closed");
        if (this.#framed.closed) return null;
        throw err;
      }
      if (payload === null) {
        this.close();
        return null;
      }
      const msg = decodeServerMessage(payload);
      if (msg.type === "pong") continue;
      return msg;
    }
  }

  async *messages(): AsyncGenerator<ServerMessage> {
    for (;;) {
      const msg = await this.next();
      if (msg === null) return;
      yield msg;
    }
  }

  /**
   * Sends `/quit`. The server answers with what was still queued, a `bye`, and then closes: keep
   * reading `next()` until it returns null.
   */
  async quit(): Promise<void> {
    await this.send({ type: "quit" });
  }

  /** Closes the connection; safe to call twice. */
  close(): void {
    clearInterval(this.#ping);
    this.#ping = undefined;
    this.#framed.close();
  }

  [Symbol.dispose](): void {
    this.close();
  }
}
