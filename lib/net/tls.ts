/**
 * TLS connections for the chat client: `Deno.connectTls` (rustls; TLS 1.3 against our server) by
 * default, or `node:tls` with `maxVersion: "TLSv1.2"` to reproduce the TLS 1.2 handshake that the
 * seed's capture shows. Both verify the server's chain against the given CA certificates only (not
 * the system store) and check the server's name or IP address against its certificate.
 */

import * as tls from "node:tls";
import { Buffer } from "node:buffer";
import type { ByteStream } from "../wire/mod.ts";

export interface TlsConnectOptions {
  hostname: string;
  port: number;
  /** Trusted roots (PEM), e.g. `cuhk.cer`. Nothing else is trusted. */
  caCerts: string[];
  /** Name to check in the certificate (default: `hostname`). */
  serverName?: string;
  /** TLS 1.2 through `node:tls` instead of TLS 1.3 through `Deno.connectTls`. */
  tls12?: boolean;
  /** Deadline for connecting and the handshake (default 10 s). */
  timeoutMs?: number;
}

export interface TlsConnection {
  stream: ByteStream;
  /** `TLSv1.3` or `TLSv1.2`, as negotiated when the library says. */
  protocol: string;
  /** The negotiated cipher suite, when the library says. */
  cipher: string | null;
}

const IP_ADDRESS = /^(\d{1,3}(\.\d{1,3}){3}|[0-9a-fA-F:]*:[0-9a-fA-F:.]*)$/;

/** Connects and completes the TLS handshake, or throws with the reason. */
export async function connectTls(options: TlsConnectOptions): Promise<TlsConnection> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  if (options.tls12) return await connectNodeTls12(options, timeoutMs);
  const serverName = options.serverName ?? options.hostname;
  // TCP first, then TLS over it: `startTls` checks the certificate against `hostname`, which may
  // be another name than the address connected to.
  const tcp = await Deno.connect({ hostname: options.hostname, port: options.port });
  const conn = await Deno.startTls(tcp, { hostname: serverName, caCerts: options.caCerts });
  const timer = setTimeout(() => conn.close(), timeoutMs);
  try {
    await conn.handshake();
  } catch (err) {
    try {
      conn.close();
    } catch {
      // Closed by the deadline.
    }
    throw new Error(
      `TLS handshake with ${options.hostname}:${options.port} failed: ${
        err instanceof Error ? err.message : String(err)
      }`,
    );
  } finally {
    clearTimeout(timer);
  }
  // rustls offers TLS 1.3 first; Deno does not report the negotiated version.
  return { stream: conn, protocol: "TLS (rustls, 1.3 preferred)", cipher: null };
}

async function connectNodeTls12(
  options: TlsConnectOptions,
  timeoutMs: number,
): Promise<TlsConnection> {
  const serverName = options.serverName ?? options.hostname;
  const socket = tls.connect({
    host: options.hostname,
    port: options.port,
    ca: options.caCerts,
    minVersion: "TLSv1.2",
    maxVersion: "TLSv1.2",
    rejectUnauthorized: true,
    // SNI must not be an IP address (RFC 6066); the IP is then checked against the SAN.
    ...(IP_ADDRESS.test(serverName) ? {} : { servername: serverName }),
    checkServerIdentity: (_host, cert) => tls.checkServerIdentity(serverName, cert),
  });
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => {
      socket.destroy();
      reject(new Error(`TLS handshake not finished within ${timeoutMs} ms`));
    }, timeoutMs);
    socket.once("secureConnect", () => {
      clearTimeout(timer);
      resolve();
    });
    socket.once("error", (err: Error) => {
      clearTimeout(timer);
      socket.destroy();
      reject(
        new Error(
          `TLS handshake with ${options.hostname}:${options.port} failed: ${err.message}`,
        ),
      );
    });
  });
  const cipher = socket.getCipher();
  return {
    stream: new NodeSocketStream(socket),
    protocol: socket.getProtocol() ?? "TLSv1.2",
    cipher: cipher?.standardName ?? cipher?.name ?? null,
  };
}

/** Adapts a `node:tls` socket to the `read`/`write`/`close` stream that `FramedStream` reads. */
class NodeSocketStream implements ByteStream {
  readonly #socket: tls.TLSSocket;
  readonly #chunks: Uint8Array[] = [];
  #buffered = 0;
  #ended = false;
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

  close(): void {
    this.#ended = true;
    this.#socket.destroy();
    this.#notify();
  }
}
