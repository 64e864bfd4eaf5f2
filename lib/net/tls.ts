/**
 * TLS connections for the chat client, through `node:tls` for both versions: TLS 1.3 by default,
 * or TLS 1.2 (`maxVersion: "TLSv1.2"`) to reproduce the handshake that the seed's capture shows.
 *
 * Only the given roots are trusted, on every path. `node:tls` with `ca` trusts exactly those
 * certificates; `Deno.startTls`/`Deno.connectTls` cannot be restricted so: their `caCerts` are
 * added to Deno's own root store (Mozilla's roots, or the system's with DENO_TLS_CA_STORE=system,
 * plus any DENO_CERT file), so a server vouched for by any of those would pass as the chat.
 *
 * The server's certificate must name `serverName`, the service (`chat`), whatever address was
 * dialled: the name is checked, not the address.
 */

import * as net from "node:net";
import * as tls from "node:tls";
import { Buffer } from "node:buffer";
import type { ByteStream } from "../wire/mod.ts";

export interface TlsConnectOptions {
  /** The address (or host name) to connect to. */
  hostname: string;
  port: number;
  /** Trusted roots (PEM), e.g. `cuhk.cer`. Nothing else is trusted. */
  caCerts: string[];
  /** The name the server's certificate must carry (a service name such as `chat`). */
  serverName: string;
  /** TLS 1.2 instead of TLS 1.3. */
  tls12?: boolean;
  /** Deadline for connecting and the handshake (default 10 s). */
  timeoutMs?: number;
}

export interface TlsConnection {
  stream: ByteStream;
  /** `TLSv1.3` or `TLSv1.2`, as negotiated. */
  protocol: string;
  /** The negotiated cipher suite, when the library says. */
  cipher: string | null;
}

/**
 * Why a TLS handshake failed: `untrusted` (the chain does not lead to a given root, or is not
 * valid now), `wrong-name` (the certificate does not name `serverName`), `timeout`, or `failed`
 * (anything else: a refused version or cipher suite, the connection closed, …).
 */
export type TlsFailure = "untrusted" | "wrong-name" | "timeout" | "failed";

/** A TLS connection that did not come up; `kind` says why, `code` is the library's code. */
export class TlsHandshakeError extends Error {
  override name = "TlsHandshakeError";
  readonly kind: TlsFailure;
  readonly code: string | undefined;

  constructor(where: string, reason: string, kind: TlsFailure, code?: string) {
    super(`TLS handshake with ${where} failed: ${reason} [${kind}]`);
    this.kind = kind;
    this.code = code;
  }
}

/**
 * The kind of a `node:tls` error: OpenSSL's certificate verify codes have no `ERR_` prefix; a
 * system error (`ECONNREFUSED`, `ECONNRESET`…, which names its `syscall`) is no verdict on trust.
 */
function failureKind(err: Error & { code?: string; syscall?: string }): TlsFailure {
  const { code } = err;
  if (code === "ERR_TLS_CERT_ALTNAME_INVALID") return "wrong-name";
  if (err.syscall !== undefined) return "failed";
  if (code !== undefined && /^[A-Z_]+$/.test(code) && !code.startsWith("ERR_")) return "untrusted";
  return "failed";
}

const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

/** Connects and completes the TLS handshake, or throws with the reason. */
export async function connectTls(options: TlsConnectOptions): Promise<TlsConnection> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const version = options.tls12 ? "TLSv1.2" : "TLSv1.3";
  const { serverName } = options;
  // Nagle's algorithm off before the first byte: otherwise the kernel holds each small TLS record
  // (the client's Finished after its Change Cipher Spec) until the server's delayed ACK, 40 ms.
  const tcp = net.connect({ host: options.hostname, port: options.port, noDelay: true });
  tcp.setNoDelay(true);
  const socket = tls.connect({
    socket: tcp,
    // Exactly these roots: `ca` replaces the default store (DENO_CERT and the system's included).
    ca: options.caCerts,
    minVersion: version,
    maxVersion: version,
    rejectUnauthorized: true,
    // SNI must not be an IP address (RFC 6066); an IP is then checked against the SAN.
    ...(IP_ADDRESS.test(serverName) ? {} : { servername: serverName }),
    checkServerIdentity: (_host, cert) => {
      const mismatch = tls.checkServerIdentity(serverName, cert);
      // check: tls-service-name tests/chat/identity_test.ts
      if (mismatch) return mismatch;
      return undefined;
    },
  });
  const where = `${options.hostname}:${options.port}`;
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      tcp.destroy();
      reject(new TlsHandshakeError(where, `not finished within ${timeoutMs} ms`, "timeout"));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      resolve();
    });
    const fail = (err: Error & { code?: string }) => {
      clearTimeout(timer);
      socket.destroy();
      tcp.destroy();
      reject(new TlsHandshakeError(where, err.message, failureKind(err), err.code));
    };
    socket.once("error", fail);
    // The TCP connection's own errors (refused, reset before the handshake).
    tcp.once("error", fail);
  });
  const cipher = socket.getCipher();
  return {
    stream: new NodeSocketStream(socket),
    protocol: socket.getProtocol() ?? version,
    cipher: cipher?.standardName ?? cipher?.name ?? null,
  };
}

/** Adapts a `node:tls` socket to the `read`/`write`/`close` stream that `FramedStream` reads. */
class NodeSocketStream implements ByteStream {
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
  #closed = false;
  #error: Error | null = null;
  #wake: (() => void) | null = null;
  /** Above this many unread bytes the socket is paused (back-pressure to the server). */
  static readonly HIGH_WATER = 1024 * 1024;

  constructor(socket: tls.TLSSocket) {
    this.#socket = socket;
    socket.on("data", (data: Buffer) => {
      this.#chunks.push(new Uint8Array(data.buffer, data.byteOffset, data.byteLength));
      this.#buffered += data.byteLength;
      if (this.#buffered > NodeSocketStream.HIGH_WATER) socket.pause();
      this.#notify();
    });
    socket.on("end", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("close", () => {
      this.#ended = true;
      this.#notify();
    });
    socket.on("error", (err: Error) => {
      this.#error = err;
      this.#notify();
    });
  }

  #notify(): void {
    const wake = this.#wake;
    this.#wake = null;
    wake?.();
  }

  async read(p: Uint8Array): Promise<number | null> {
    while (this.#chunks.length === 0) {
      if (this.#error) throw this.#error;
      if (this.#ended) return null;
      await new Promise<void>((resolve) => (this.#wake = resolve));
    }
    const chunk = this.#chunks[0]!;
    const n = Math.min(p.length, chunk.length);
    p.set(chunk.subarray(0, n));
    if (n === chunk.length) this.#chunks.shift();
    else this.#chunks[0] = chunk.subarray(n);
    this.#buffered -= n;
    if (this.#buffered <= NodeSocketStream.HIGH_WATER / 2 && this.#socket.isPaused()) {
      this.#socket.resume();
    }
    return n;
  }

  write(p: Uint8Array): Promise<number> {
    if (this.#error) return Promise.reject(this.#error);
    return new Promise((resolve, reject) => {
      this.#socket.write(Buffer.from(p), (err?: Error | null) => {
        if (err) reject(err);
        else resolve(p.length);
      });
    });
  }

  /** Says goodbye (TLS close_notify) and closes; the socket is destroyed if the peer lingers. */
  close(): void {
    this.#ended = true;
    if (!this.#closed) {
      this.#closed = true;
      this.#socket.end();
      const timer = setTimeout(() => this.#socket.destroy(), 1000);
      Deno.unrefTimer(timer);
      this.#socket.once("close", () => clearTimeout(timer));
    }
    this.#notify();
  }
}

/**
 * Guards the TLS key log. The runtime writes every session's secrets to the file named by
 * `SSLKEYLOGFILE` (read once, at process start, when it also creates the file with the default
 * mode): a key log outside the project, or readable by others, gives the traffic away. Returns why
 * the actor must not start, or null when there is no key log, it is (or was just made) a private
 * file inside the project, or the variable cannot be read (no `--allow-env=SSLKEYLOGFILE`: the
 * tasks grant it). `warn` hears about a key log made private.
 */
export async function keyLogProblem(
  projectRoot: string,
  warn: (line: string) => void,
): Promise<string | null> {
  let path: string | undefined;
  try {
    // Asked first, so that a terminal never gets Deno's permission prompt.
    const allowed = Deno.permissions.querySync({ name: "env", variable: "SSLKEYLOGFILE" });
    if (allowed.state !== "granted") return null;
    path = Deno.env.get("SSLKEYLOGFILE");
  } catch {
    return null;
  }
  if (path === undefined || path === "") return null;
  const absolute = path.startsWith("/") ? path : `${Deno.cwd()}/${path}`;
  const root = projectRoot.replace(/\/$/, "");
  const normal = new URL(`file://${absolute}`).pathname;
  // check: keylog-inside-project tests/chat/cli_test.ts
  if (!normal.startsWith(`${root}/`)) {
    return `SSLKEYLOGFILE=${path} is outside the project: every TLS session key would be written there (nothing was). Use a file under data/, e.g. SSLKEYLOGFILE=data/tls-keys.log`;
  }
  let mode: number | null = null;
  try {
    mode = (await Deno.stat(normal)).mode;
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  // check: keylog-private tests/chat/cli_test.ts
  if (mode !== null && (mode & 0o077) !== 0) {
    try {
      await Deno.chmod(normal, 0o600);
    } catch {
      return `SSLKEYLOGFILE=${path} can be read by others (mode ${
        (mode & 0o777).toString(8)
      }): every TLS session key would be written there. Run: chmod 600 ${path}`;
    }
    warn(
      `SSLKEYLOGFILE=${path} could be read by others (mode ${
        (mode & 0o777).toString(8)
      }): made it 0600`,
    );
  }
  return null;
}
