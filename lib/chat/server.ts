/**
 * The chat server (system 3): TLS (`Deno.listenTls`, rustls: TLS 1.3 and 1.2, forward-secret AEAD
 * suites only, so the seed's AES128-SHA is refused), length-prefixed JSON frames, many clients.
 * Its connections have Nagle's algorithm off when the process may use FFI (`noDelayOnAccepted`):
 * otherwise each TLS 1.2 handshake waits 40 ms for the client's delayed ACK.
 *
 * One slow client never delays the others: every client has its own bounded outgoing queue and a
 * writer task; a broadcast only appends to queues. A client whose queue overflows, or whose socket
 * makes no write progress within the write deadline, is disconnected (with a `bye` notice queued
 * for it and a `left` notice for everyone else). Deadlines reap connections that never finish the
 * TLS handshake or never say hello, and joined connections that go quiet (clients send pings).
 */

import { DeadlineError, formatMs, FramedStream, FrameError } from "../wire/mod.ts";
import { errorMessage, formatBytes, printable, type StepLog } from "../runtime/mod.ts";
import {
  type ConnectionInfo,
  noDelayOnAccepted,
  type NoDelayOutcome,
  serve,
  type Server,
} from "../net/mod.ts";
import {
  CHAT_PORT,
  type ClientMessage,
  decodeClientMessage,
  encodeServerMessage,
  MAX_TEXT,
  nickClash,
  nickKey,
  nickProblem,
  QUIT_GOODBYE,
  type ServerMessage,
  textProblem,
} from "./protocol.ts";
import { type ChatLimits, DEFAULT_CHAT_LIMITS } from "./limits.ts";
import { Member } from "./member.ts";

export interface ChatServerOptions {
  /** Server certificate (PEM, issued by the CA: rustls refuses a self-signed one). */
  cert: string;
  /** Its private key (PEM). */
  key: string;
  log: StepLog;
  hostname?: string;
  /** Default 8443; 0 picks a free port. */
  port?: number;
  limits?: Partial<ChatLimits>;
  /** Aborting it shuts down gracefully: every client is told, then the server stops. */
  signal?: AbortSignal;
}

/** A running chat server. */
export class ChatServer {
  readonly #server: Server;
  readonly #room: ChatRoom;
  readonly #controller: AbortController;
  /** Whether accepted connections have TCP_NODELAY (Nagle's algorithm off), and if not, why. */
  readonly noDelay: NoDelayOutcome;

  constructor(
    server: Server,
    room: ChatRoom,
    controller: AbortController,
    noDelay: NoDelayOutcome,
  ) {
    this.#server = server;
    this.#room = room;
    this.#controller = controller;
    this.noDelay = noDelay;
  }

  get addr(): Deno.NetAddr {
    return this.#server.addr;
  }

  get port(): number {
    return this.#server.port;
  }

  /** Settles when the server has stopped. */
  get finished(): Promise<void> {
    return this.#server.finished;
  }

  /** Nicknames joined right now. */
  get nicks(): string[] {
    return this.#room.nicks();
  }

  /** Tells every client the server is shutting down, stops accepting, and waits until done. */
  async close(): Promise<void> {
    this.#controller.abort();
    await this.#server.finished;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.close();
  }
}

/** Starts the chat server. */
export function serveChat(options: ChatServerOptions): ChatServer {
  const limits: ChatLimits = { ...DEFAULT_CHAT_LIMITS, ...options.limits };
  if (limits.maxText > MAX_TEXT) throw new RangeError(`maxText must be at most ${MAX_TEXT}`);
  const controller = new AbortController();
  const signal = options.signal
    ? AbortSignal.any([options.signal, controller.signal])
    : controller.signal;
  const listener = Deno.listenTls({
    hostname: options.hostname ?? "127.0.0.1",
    port: options.port ?? CHAT_PORT,
    cert: options.cert,
    key: options.key,
  });
  // Before the first accept, so that every connection inherits it.
  const noDelay = noDelayOnAccepted(listener);
  options.log.info(
    noDelay.set
      ? "TCP_NODELAY on every connection (set on the listening socket through FFI)"
      : `TCP_NODELAY not set (${noDelay.reason}): each TLS 1.2 handshake may wait up to 40 ms ` +
        "for the client's delayed ACK",
  );
  const room = new ChatRoom(limits, options.log);
  signal.addEventListener("abort", () => room.shutdown("Server is shutting down"), { once: true });
  const server = serve({
    listener,
    log: options.log,
    // Room for a few connections over the client limit, so that they hear why they are refused.
    maxConnections: limits.maxClients + 32,
    maxPerAddress: limits.maxPerAddress,
    signal,
    graceMs: Math.min(limits.writeTimeoutMs, 3000),
    handler: (conn, info) => room.handle(conn, info),
  });
  return new ChatServer(server, room, controller, noDelay);
}

/** Everyone joined, and the rules of the room. */
class ChatRoom {
  readonly #limits: ChatLimits;
  readonly #log: StepLog;
  readonly #members = new Map<string, Member>();
  /** Connections still in the TLS handshake or before `hello`. */
  readonly #pending = new Set<FramedStream>();
  #shuttingDown = false;

  constructor(limits: ChatLimits, log: StepLog) {
    this.#limits = limits;
    this.#log = log;
  }

  nicks(): string[] {
    return [...this.#members.values()].map((m) => m.nick);
  }

  /** Serves one connection from the TLS handshake to the end. */
  async handle(conn: Deno.TlsConn, info: ConnectionInfo): Promise<void> {
    const log = info.log;
    const framed = new FramedStream(conn, {
      maxFrame: this.#limits.maxFrame,
      // A chat line is small: 4 KiB of buffer, not 64, for each of up to a thousand members.
      readBufferBytes: 4096,
      readTimeoutMs: this.#limits.idleTimeoutMs,
      writeTimeoutMs: this.#limits.writeTimeoutMs,
    });
    this.#pending.add(framed);
    const member = await this.#admit(conn, framed, info).finally(() =>
      this.#pending.delete(framed)
    );
    if (!member) return;
    const writer = member.writeLoop();
    try {
      await this.#readLoop(member);
    } finally {
      // Wakes the writer if it waits; closes the connection once it is done.
      member.finish("Connection closed", 0);
      await writer;
      this.#leave(member, member.failure ?? "connection closed");
      log.info(`${member.nick}: connection closed`);
    }
  }

  /** TLS handshake, then `hello` with a free, valid nickname; null when refused. */
  async #admit(
    conn: Deno.TlsConn,
    framed: FramedStream,
    info: ConnectionInfo,
  ): Promise<Member | null> {
    const { log, remote } = info;
    const helloMs = this.#limits.helloTimeoutMs;
    const started = performance.now();
    // Until the handshake is done there is no way to say why: the deadline just closes.
    let deadline = setTimeout(() => framed.close(), helloMs);
    let timedOut = false;
    try {
      try {
        await conn.handshake();
      } catch (err) {
        log.warn(
          framed.closed && !this.#shuttingDown
            ? `TLS handshake from ${remote} not finished within ${formatMs(helloMs)}: closed`
            : `TLS handshake from ${remote} failed: ${errorMessage(err)}`,
        );
        return null;
      }
      log.info(`TLS handshake with ${remote} complete`);
      clearTimeout(deadline);
      deadline = setTimeout(() => {
        timedOut = true;
        log.warn(`${remote}: no hello within ${formatMs(helloMs)}`);
        void this.#refuse(framed, `No hello within ${formatMs(helloMs)}`);
      }, Math.max(0, helloMs - (performance.now() - started)));
      let payload: Uint8Array | null;
      try {
        // The timer above answers first; this deadline only backs it up.
        payload = await framed.readFrame({ timeoutMs: helloMs + this.#limits.writeTimeoutMs });
      } catch (err) {
        if (timedOut || this.#shuttingDown) return null;
        log.warn(`${remote}: ${errorMessage(err)}`);
        await this.#refuse(framed, errorMessage(err));
        return null;
      }
      clearTimeout(deadline);
      if (timedOut) return null;
      if (payload === null) {
        log.info(`${remote} closed before hello`);
        return null;
      }
      let msg: ClientMessage;
      try {
        msg = decodeClientMessage(payload);
      } catch (err) {
        log.warn(`${remote}: ${errorMessage(err)}`);
        await this.#refuse(framed, errorMessage(err));
        return null;
      }
      if (msg.type !== "hello") {
        await this.#refuse(framed, `Expected hello, got ${msg.type}`);
        return null;
      }
      const problem = nickProblem(msg.nick) ??
        this.#nickClash(msg.nick) ??
        (this.#shuttingDown ? "Server is shutting down" : null) ??
        (this.#members.size >= this.#limits.maxClients
          ? `Server is full (${this.#limits.maxClients} clients)`
          : null);
      // check: chat-join-refusal tests/chat/server_test.ts
      if (problem) {
        log.warn(`${remote}: refused: ${problem}`);
        await this.#refuse(framed, problem);
        return null;
      }
      const member = new Member(msg.nick, framed, log, this.#limits);
      const others = this.nicks();
      this.#members.set(member.key, member);
      member.enqueue(encodeServerMessage({
        type: "welcome",
        nick: member.nick,
        users: [...others, member.nick],
        idleMs: this.#limits.idleTimeoutMs,
        maxText: this.#limits.maxText,
        rate: this.#limits.rate,
      }));
      log.info(`${member.nick} joined from ${remote} (${this.#members.size} online)`);
      this.#broadcast({ type: "joined", nick: member.nick, time: Date.now() }, member);
      return member;
    } finally {
      clearTimeout(deadline);
    }
  }

  /**
   * Why `nick` cannot join beside the member online under its key (`nickKey`: the same name in
   * another case, or a lookalike such as `аdmin` for `admin`), or null.
   */
  #nickClash(nick: string): string | null {
    const online = this.#members.get(nickKey(nick));
    return online ? nickClash(nick, online.nick) : null;
  }

  /** Writes a last `bye` to a connection that never joined, then closes it. */
  async #refuse(framed: FramedStream, reason: string): Promise<void> {
    try {
      if (!framed.closed) await framed.writeFrame(encodeServerMessage({ type: "bye", reason }));
    } catch {
      // The peer is gone; nothing more to tell it.
    } finally {
      framed.close();
    }
  }

  async #readLoop(member: Member): Promise<void> {
    const idleMs = this.#limits.idleTimeoutMs;
    // A resettable idle timer: on expiry the client gets a `bye` saying why, then is closed. The
    // read's own deadline (later) only backs it up.
    let idle: ReturnType<typeof setTimeout> | undefined;
    try {
      for (;;) {
        clearTimeout(idle);
        idle = setTimeout(() => this.#drop(member, `Idle for ${formatMs(idleMs)}`), idleMs);
        if (!(await this.#readOne(member, idleMs + this.#limits.writeTimeoutMs))) return;
      }
    } finally {
      clearTimeout(idle);
    }
  }

  /** Reads and handles one message; false when the session ends. */
  async #readOne(member: Member, timeoutMs: number): Promise<boolean> {
    const { framed, log } = member;
    let payload: Uint8Array | null;
    try {
      payload = await framed.readFrame({ timeoutMs });
    } catch (err) {
      if (err instanceof DeadlineError) {
        this.#drop(member, `Idle for ${formatMs(this.#limits.idleTimeoutMs)}`);
      } else if (framed.closed) {
        // Closed by the writer (a stalled write) or by a drop: the reason is already known.
      } else if (err instanceof FrameError) {
        this.#drop(member, errorMessage(err));
      } else if (/close_notify|unexpected ?eof|connection reset/i.test(errorMessage(err))) {
        // A client killed (Ctrl-C) ends its TCP connection without TLS's close_notify: it left.
        log.info(`${member.nick} left without saying goodbye (Ctrl-C or a lost connection)`);
      } else {
        log.warn(`${member.nick}: read failed: ${errorMessage(err)}`);
      }
      return false;
    }
    if (payload === null) return false;
    let msg: ClientMessage;
    try {
      msg = decodeClientMessage(payload);
    } catch (err) {
      this.#drop(member, errorMessage(err));
      return false;
    }
    const { rate, burst } = this.#limits;
    const limit = `at most ${rate} messages a second, bursts of ${burst}`;
    // check: chat-rate-limit tests/chat/server_test.ts
    if (!member.limiter.take()) {
      member.strikes++;
      // check: chat-flood-drop tests/chat/server_test.ts
      if (member.strikes > burst) {
        this.#drop(
          member,
          `Flooding: ${member.strikes} messages over the rate limit in a row (${limit})`,
        );
        return false;
      }
      if (member.strikes === 1) {
        log.warn(`${member.nick}: over the rate limit, dropping messages`);
        this.#tell(member, {
          type: "error",
          reason: `Rate limit (${limit}): message dropped, and the next ones until you slow down`,
        });
      }
      return true;
    }
    if (member.strikes > 0) {
      // The burst of drops is over: one notice with its count, so none was dropped silently.
      this.#tell(member, {
        type: "error",
        reason: `Rate limit (${limit}): ${member.strikes} message(s) dropped in all`,
      });
      member.strikes = 0;
    }
    return this.#dispatch(member, msg);
  }

  /** Acts on one message; false when the session ends. */
  #dispatch(member: Member, msg: ClientMessage): boolean {
    const time = Date.now();
    switch (msg.type) {
      case "say": {
        const problem = textProblem(msg.text, this.#limits.maxText);
        // check: chat-say-text tests/chat/server_test.ts
        if (problem) return this.#tell(member, { type: "error", reason: problem });
        this.#broadcast({ type: "said", from: member.nick, text: msg.text, time });
        return true;
      }
      case "msg": {
        const problem = textProblem(msg.text, this.#limits.maxText);
        if (problem) return this.#tell(member, { type: "error", reason: problem });
        const to = this.#members.get(nickKey(msg.to));
        // check: chat-private-unknown-user tests/chat/server_test.ts
        if (!to) {
          return this.#tell(member, {
            type: "error",
            reason: `No such user: ${printable(msg.to)}`,
          });
        }
        const out: ServerMessage = {
          type: "private",
          from: member.nick,
          to: to.nick,
          text: msg.text,
          time,
        };
        this.#tell(to, out);
        if (to !== member) this.#tell(member, out);
        return true;
      }
      case "who":
        return this.#tell(member, { type: "users", users: this.nicks() });
      case "ping":
        return this.#tell(member, { type: "pong" });
      case "quit":
        member.log.info(`${member.nick} left (quit)`);
        this.#members.delete(member.key);
        this.#broadcast({ type: "left", nick: member.nick, reason: "quit", time });
        member.finish(QUIT_GOODBYE, this.#limits.writeTimeoutMs, true);
        return false;
      case "hello":
        this.#drop(member, "Already joined: hello sent twice");
        return false;
    }
  }

  /** Queues one message for one member; a full queue disconnects it. False if it was dropped. */
  #tell(member: Member, msg: ServerMessage): boolean {
    if (member.enqueue(encodeServerMessage(msg))) return true;
    this.#drop(member, this.#overflow());
    return false;
  }

  /** Queues one message for everyone (but `except`); whoever overflows is disconnected. */
  #broadcast(msg: ServerMessage, except?: Member): void {
    const payload = encodeServerMessage(msg);
    const overflowed: Member[] = [];
    for (const m of this.#members.values()) {
      if (m !== except && !m.enqueue(payload)) overflowed.push(m);
    }
    for (const m of overflowed) {
      this.#drop(m, this.#overflow());
    }
  }

  #overflow(): string {
    return `Not reading: more than ${formatBytes(this.#limits.maxQueueBytes)} queued`;
  }

  /** Disconnects a member for `reason`: it gets a `bye`, everyone else a `left`. */
  #drop(member: Member, reason: string): void {
    if (this.#members.get(member.key) !== member) {
      member.finish(reason, 1000);
      return;
    }
    this.#members.delete(member.key);
    member.log.warn(`${member.nick} disconnected: ${reason}`);
    member.finish(reason, Math.min(this.#limits.writeTimeoutMs, 2000));
    this.#broadcast({ type: "left", nick: member.nick, reason, time: Date.now() });
  }

  /** A member whose connection ended: remove it (unless dropped already) and tell the others. */
  #leave(member: Member, reason: string): void {
    if (this.#members.get(member.key) !== member) return;
    this.#members.delete(member.key);
    if (member.failure) member.log.warn(`${member.nick} disconnected: ${reason}`);
    if (this.#shuttingDown) return;
    this.#broadcast({ type: "left", nick: member.nick, reason, time: Date.now() });
  }

  /** Graceful shutdown: everyone gets a `bye` after what is already queued. */
  shutdown(reason: string): void {
    if (this.#shuttingDown) return;
    this.#shuttingDown = true;
    this.#log.info(`shutting down: telling ${this.#members.size} clients`);
    for (const framed of this.#pending) framed.close();
    for (const m of this.#members.values()) {
      m.finish(reason, Math.min(this.#limits.writeTimeoutMs, 2000), true);
    }
  }
}
