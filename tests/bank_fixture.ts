/**
 * Fixtures for the bank tests: Bob on port 0 over a test PKI, Alice's client options for a test
 * student, and a frame relay that records, rewrites or replays what passes through it.
 */

import { Accounts } from "../lib/bank_accounts.ts";
import type { BankClientOptions } from "../lib/bank_client.ts";
import { type BobIdentity, loadBobIdentity } from "../lib/bank_handshake.ts";
import { BANK_MAX_FRAME, type BankMode } from "../lib/bank_protocol.ts";
import { serveBank } from "../lib/bank_server.ts";
import { FramedStream } from "../lib/frame.ts";
import type { StepLog } from "../lib/log.ts";
import type { Certificate, Crl } from "../lib/pki.ts";
import type { Server } from "../lib/server.ts";
import { memoryLog, type TestPki, type TestStudent } from "./helpers.ts";

export interface TestBank extends AsyncDisposable {
  server: Server;
  port: number;
  accounts: Accounts;
  lines: string[];
  dir: string;
}

export interface TestBankOptions {
  mode?: BankMode;
  /** Bob's identity (default: a certificate for 127.0.0.1 from the test PKI). */
  identity?: BobIdentity;
  handshakeTimeoutMs?: number;
  idleTimeoutMs?: number;
  crl?: Crl;
}

const identities = new WeakMap<TestPki, Promise<BobIdentity>>();

/** Bob's identity from the test PKI, made once per PKI. */
export function bobIdentity(pki: TestPki): Promise<BobIdentity> {
  let p = identities.get(pki);
  if (!p) {
    p = pki.serverCert("bank", ["127.0.0.1"]).then((c) => loadBobIdentity(c.keyPem, c.cert));
    identities.set(pki, p);
  }
  return p;
}

/** Bob in this process, on port 0, with accounts in a temporary directory. */
export async function startBank(pki: TestPki, options: TestBankOptions = {}): Promise<TestBank> {
  const dir = await Deno.makeTempDir({ prefix: "lab-bank-" });
  const accounts = Accounts.open(`${dir}/accounts.db`);
  const { log, lines } = memoryLog("Bob");
  const server = serveBank({
    mode: options.mode ?? "secure",
    accounts,
    identity: options.identity ?? await bobIdentity(pki),
    log,
    root: pki.root,
    port: 0,
    ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
    ...(options.idleTimeoutMs ? { idleTimeoutMs: options.idleTimeoutMs } : {}),
    ...(options.crl ? { crl: options.crl } : {}),
  });
  return {
    server,
    port: server.port,
    accounts,
    lines,
    dir,
    async [Symbol.asyncDispose]() {
      await server.close();
      accounts.close();
      await Deno.remove(dir, { recursive: true }).catch(() => {});
    },
  };
}

/** Alice's client options for a test student against a port. */
export function aliceOptions(
  pki: TestPki,
  student: TestStudent,
  port: number,
  log: StepLog,
  extra: Partial<BankClientOptions> = {},
): BankClientOptions {
  return {
    bank: { hostname: "127.0.0.1", port },
    mode: "secure",
    log,
    root: pki.root as Certificate,
    cert: student.cert,
    keyPem: student.keyPem,
    ...extra,
  };
}

export type Direction = "toBob" | "toAlice";
/** Returns the frame to forward (possibly rewritten), or null to drop it. */
export type FrameHook = (
  direction: Direction,
  frame: Uint8Array,
) => Uint8Array | null | Promise<Uint8Array | null>;

/**
 * A relay on port 0 in front of Bob, frame by frame, for one connection at a time: it records
 * every frame and lets a hook rewrite or drop them (a man in the middle on loopback).
 */
export class FrameRelay implements AsyncDisposable {
  readonly listener: Deno.Listener;
  readonly frames: { direction: Direction; frame: Uint8Array }[] = [];
  readonly #target: number;
  readonly #hook: FrameHook;
  readonly #tasks = new Set<Promise<void>>();
  readonly #conns = new Set<Deno.Conn>();
  readonly #accepting: Promise<void>;

  constructor(targetPort: number, hook: FrameHook = (_d, f) => f) {
    this.listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
    this.#target = targetPort;
    this.#hook = hook;
    this.#accepting = this.#accept();
  }

  get port(): number {
    return (this.listener.addr as Deno.NetAddr).port;
  }

  async #accept(): Promise<void> {
    try {
      for await (const alice of this.listener) {
        const bob = await Deno.connect({ hostname: "127.0.0.1", port: this.#target });
        this.#conns.add(alice);
        this.#conns.add(bob);
        const a = new FramedStream(alice, { maxFrame: BANK_MAX_FRAME });
        const b = new FramedStream(bob, { maxFrame: BANK_MAX_FRAME });
        const t = Promise.all([this.#pump(a, b, "toBob"), this.#pump(b, a, "toAlice")]).then(
          () => {},
        );
        this.#tasks.add(t);
      }
    } catch {
      // Listener closed.
    }
  }

  async #pump(from: FramedStream, to: FramedStream, direction: Direction): Promise<void> {
    try {
      for (;;) {
        const frame = await from.readFrame({ timeoutMs: 30_000 });
        if (frame === null) break;
        this.frames.push({ direction, frame });
        const out = await this.#hook(direction, frame);
        if (out !== null) await to.writeFrame(out);
      }
    } catch {
      // Either side went away.
    } finally {
      from.close();
      to.close();
    }
  }

  /** The frames that went one way. */
  sent(direction: Direction): Uint8Array[] {
    return this.frames.filter((f) => f.direction === direction).map((f) => f.frame);
  }

  async [Symbol.asyncDispose](): Promise<void> {
    try {
      this.listener.close();
    } catch {
      // Closed.
    }
    for (const c of this.#conns) {
      try {
        c.close();
      } catch {
        // Closed.
      }
    }
    await this.#accepting;
    await Promise.allSettled(this.#tasks);
  }
}

/**
 * A fake Bob for one connection: answers each of Alice's frames with the next of `replies` and
 * returns what Alice sent (the replay attack's impersonator).
 */
export async function fakeBob(
  replies: Uint8Array[],
  run: (port: number) => Promise<void>,
): Promise<Uint8Array[]> {
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const received: Uint8Array[] = [];
  const serving = (async () => {
    const conn = await listener.accept();
    const s = new FramedStream(conn, { maxFrame: BANK_MAX_FRAME, readTimeoutMs: 5000 });
    try {
      for (const reply of replies) {
        const frame = await s.readFrame();
        if (frame === null) return;
        received.push(frame);
        await s.writeFrame(reply);
      }
      // Whatever Alice sends next (her secret, or her refusal).
      const last = await s.readFrame();
      if (last) received.push(last);
    } catch {
      // Alice went away.
    } finally {
      s.close();
    }
  })();
  await run((listener.addr as Deno.NetAddr).port);
  await serving;
  return received;
}
