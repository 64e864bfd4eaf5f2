/**
 * Shared by the chat tests: a chat server on port 0 with a real CA-issued certificate, clients
 * that collect what they receive, and raw TLS connections for hostile peers.
 */

import {
  ChatClient,
  type ChatLimits,
  type ChatServer,
  decodeServerMessage,
  encodeClientMessage,
  type JoinOptions,
  serveChat,
  SERVER_MAX_FRAME,
  type ServerMessage,
} from "../../lib/chat/mod.ts";
import { FramedStream } from "../../lib/wire/mod.ts";
import { type Changes, waitFor } from "../../lib/runtime/mod.ts";
import {
  ACTOR_PERMISSIONS,
  ActorProcess,
  memoryLog,
  TestPki,
  type TestServerCert,
} from "./helpers.ts";

/**
 * The chat server as a process (`actors/chat.ts serve` on port 0), with a certificate for `chat`,
 * 127.0.0.1 and localhost from `pki`; returns once it listens. `args` go after serve's own;
 * `ffi: false` takes away the --allow-ffi that its task grants (TCP_NODELAY).
 */
export async function startChatActor(
  pki: TestPki,
  options: { args?: string[]; env?: Record<string, string>; ffi?: boolean } = {},
): Promise<{ server: ActorProcess; port: number; cert: TestServerCert }> {
  const cert = await pki.serverCert("chat", ["127.0.0.1"], ["localhost"]);
  const server = new ActorProcess("actors/chat.ts", [
    "serve",
    "--port",
    "0",
    "--cert",
    cert.certPath,
    "--key",
    cert.keyPath,
    ...(options.args ?? []),
  ], {
    ...(options.env ? { env: options.env } : {}),
    // The task's --allow-ffi comes with the actor (denoRunArgs); the control takes it away.
    ...(options.ffi === false ? { permissions: [...ACTOR_PERMISSIONS, "--deny-ffi"] } : {}),
  });
  const m = await server.waitFor(/listening on 127\.0\.0\.1:(\d+)/);
  return { server, port: Number(m[1]), cert };
}

export class ChatFixture implements AsyncDisposable {
  readonly pki: TestPki;
  readonly cert: TestServerCert;
  readonly rootPem: string;
  readonly server: ChatServer;
  readonly lines: string[];
  readonly #changes: Changes;
  readonly #clients: ChatClient[] = [];

  private constructor(
    pki: TestPki,
    cert: TestServerCert,
    server: ChatServer,
    log: { lines: string[]; changes: Changes },
  ) {
    this.pki = pki;
    this.cert = cert;
    this.rootPem = pki.ca.rootPem;
    this.server = server;
    this.lines = log.lines;
    this.#changes = log.changes;
  }

  static async start(limits: Partial<ChatLimits> = {}): Promise<ChatFixture> {
    const pki = await TestPki.start();
    // The chat's name, and localhost and 127.0.0.1 for the independent peers that check those.
    const cert = await pki.serverCert("chat", ["127.0.0.1"], ["localhost"]);
    const { log, lines, changes } = memoryLog("chat");
    const server = serveChat({
      cert: await Deno.readTextFile(cert.certPath),
      key: cert.keyPem,
      log,
      port: 0,
      limits,
    });
    return new ChatFixture(pki, cert, server, { lines, changes });
  }

  get port(): number {
    return this.server.port;
  }

  /** Joins as `nick` (TLS 1.3 by default), trusting only the test root. */
  async join(nick: string, options: Partial<JoinOptions> = {}): Promise<Member> {
    const client = await ChatClient.join({
      hostname: "127.0.0.1",
      port: this.port,
      caCerts: [this.rootPem],
      nick,
      ...options,
    });
    this.#clients.push(client);
    return new Member(client);
  }

  /** A TLS connection that speaks raw frames (for hostile cases). */
  async raw(): Promise<{ conn: Deno.TlsConn; framed: FramedStream }> {
    const conn = await Deno.connectTls({
      hostname: "127.0.0.1",
      port: this.port,
      caCerts: [this.rootPem],
    });
    await conn.handshake();
    return { conn, framed: new FramedStream(conn, { maxFrame: SERVER_MAX_FRAME }) };
  }

  /** Waits until a server log line matches (checked again on each new line). */
  async logMatching(pattern: RegExp, timeoutMs = 5000): Promise<string> {
    return await waitFor(() => this.lines.find((l) => pattern.test(l)), {
      what: `a server log line matching ${pattern}`,
      timeoutMs,
      changes: this.#changes,
      detail: () => `\n${this.lines.join("\n")}`,
    });
  }

  async [Symbol.asyncDispose](): Promise<void> {
    for (const c of this.#clients) c.close();
    await this.server.close();
    await this.pki[Symbol.asyncDispose]();
  }
}

/** A joined client whose messages are collected as they come. */
export class Member {
  readonly client: ChatClient;
  readonly inbox: ServerMessage[] = [];
  /** Arrival time (performance.now()) of each inbox message. */
  readonly arrivals: number[] = [];
  ended = false;
  readonly done: Promise<void>;
  #waiters = new Set<() => void>();

  constructor(client: ChatClient) {
    this.client = client;
    this.done = (async () => {
      try {
        for await (const msg of client.messages()) {
          this.inbox.push(msg);
          this.arrivals.push(performance.now());
          this.#notify();
        }
      } catch {
        // Ended; `ended` says so.
      } finally {
        this.ended = true;
        this.#notify();
      }
    })();
  }

  #notify(): void {
    for (const w of this.#waiters) w();
  }

  send(line: Parameters<ChatClient["send"]>[0]): Promise<void> {
    return this.client.send(line);
  }

  /** The first message (from index `from`) matching `pred`, waiting up to `timeoutMs`. */
  async waitFor(
    pred: (m: ServerMessage) => boolean,
    timeoutMs = 5000,
    from = 0,
  ): Promise<ServerMessage> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const found = this.inbox.slice(from).find(pred);
      if (found) return found;
      if (this.ended) {
        throw new Error(
          `${this.client.nick}: connection ended; received ${JSON.stringify(this.inbox)}`,
        );
      }
      const left = deadline - Date.now();
      if (left <= 0) {
        throw new Error(
          `${this.client.nick}: timed out; received ${JSON.stringify(this.inbox).slice(0, 2000)}`,
        );
      }
      await new Promise<void>((resolve) => {
        const wake = () => {
          clearTimeout(t);
          this.#waiters.delete(wake);
          resolve();
        };
        const t = setTimeout(wake, left);
        this.#waiters.add(wake);
      });
    }
  }

  /** Waits until the connection has ended. */
  async closed(timeoutMs = 5000): Promise<void> {
    let timer: ReturnType<typeof setTimeout> | undefined;
    await Promise.race([
      this.done,
      new Promise((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`${this.client.nick}: still open after ${timeoutMs} ms`)),
          timeoutMs,
        );
      }),
    ]).finally(() => clearTimeout(timer));
  }
}

/** Sends `hello` on a raw connection and reads the answer. */
export async function rawHello(framed: FramedStream, nick: string): Promise<ServerMessage> {
  await framed.writeFrame(encodeClientMessage({ type: "hello", nick }));
  const payload = await framed.readFrame({ timeoutMs: 5000 });
  if (payload === null) throw new Error("Closed before welcome");
  return decodeServerMessage(payload);
}

/** Reads frames until the connection ends; returns the decoded messages. */
export async function readAll(framed: FramedStream, timeoutMs = 5000): Promise<ServerMessage[]> {
  const out: ServerMessage[] = [];
  for (;;) {
    let payload: Uint8Array | null;
    try {
      payload = await framed.readFrame({ timeoutMs });
    } catch {
      return out;
    }
    if (payload === null) return out;
    out.push(decodeServerMessage(payload));
  }
}

export const is = <T extends ServerMessage["type"]>(type: T) => (m: ServerMessage) =>
  m.type === type;
