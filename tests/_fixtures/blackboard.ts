/**
 * Fixtures for the Blackboard tests: a Blackboard on port 0 over a test PKI, and test files.
 * (Replaying, reordering, corrupting or cutting frames on the path is lib/net/relay.ts, Trudy's.)
 */

import { createHash } from "node:crypto";
import {
  type BlackboardMode,
  type RecordKind,
  serveBlackboard,
  UploadStore,
  type UploadStoreOptions,
} from "../../lib/blackboard/mod.ts";
import type { HostPort } from "../../lib/runtime/mod.ts";
import { fetchCrl, loadIdentity, type StudentIdentity } from "../../lib/ca/mod.ts";
import {
  type Certificate,
  importSigningKey,
  parseCertificate,
  type Revocation,
  RevocationChecker,
} from "../../lib/pki/mod.ts";
import type { Server } from "../../lib/net/mod.ts";
import { memoryLog, type TestPki, type TestServerCert } from "./helpers.ts";

export interface TestBlackboard extends AsyncDisposable {
  server: Server;
  addr: HostPort;
  dataDir: string;
  /** Log lines. */
  lines: string[];
  /** What Blackboard printed (each valid message, each receipt). */
  printed: string[];
  /** Blackboard's own certificate (from the test PKI, CN blackboard) and its key (PKCS#8 PEM). */
  cert: Certificate;
  keyPem: string;
}

export interface BlackboardFixtureOptions {
  protocol?: BlackboardMode;
  /** "hmac" allows MAC-only records too (default: AES-GCM records only). */
  records?: RecordKind;
  /** Replaces the revocation checker fed by the CA (a test's own CRLs). */
  revocation?: Revocation;
  handshakeTimeoutMs?: number;
  sessionTimeoutMs?: number;
  /** The CA to fetch CRLs from (default the test PKI's server). */
  ca?: HostPort;
  refreshMs?: number;
  /** Reuse a data directory (for restarts). */
  dataDir?: string;
  /** The report store's limits. */
  store?: UploadStoreOptions;
  /** Blackboard's certificate and key (default: one for `blackboard` and 127.0.0.1). */
  serverCert?: TestServerCert;
  /** The per-address handshake limit (default: Blackboard's, 20 a second in bursts of 40). */
  handshakeLimit?: { rate: number; burst: number };
}

const serverCertCache: WeakMap<TestPki, Promise<{ certPem: string; keyPem: string }>> =
  new WeakMap();

/** Starts Blackboard with its own certificate from the test PKI, in a fresh data directory. */
export async function startBlackboard(
  pki: TestPki,
  options: BlackboardFixtureOptions = {},
): Promise<TestBlackboard> {
  let issued = serverCertCache.get(pki);
  if (!issued && !options.serverCert) {
    issued = pki.serverCert("blackboard").then((c) => ({
      certPem: c.cert.toString("pem"),
      keyPem: c.keyPem,
    }));
    serverCertCache.set(pki, issued);
  }
  const { certPem, keyPem } = options.serverCert
    ? { certPem: options.serverCert.cert.toString("pem"), keyPem: options.serverCert.keyPem }
    : await issued!;
  const dataDir = options.dataDir ?? await Deno.makeTempDir({ prefix: "lab-blackboard-" });
  const { log, lines } = memoryLog("Blackboard");
  const printed: string[] = [];
  const [host, port] = pki.caAddr.split(":");
  const ca = options.ca ?? { hostname: host!, port: Number(port) };
  const cert = parseCertificate(certPem);
  const server = serveBlackboard({
    root: pki.root,
    cert,
    signingKey: await importSigningKey(keyPem),
    revocation: options.revocation ?? new RevocationChecker({
      fetch: (timeoutMs) => fetchCrl(ca, pki.root, timeoutMs),
      source: `the CA at ${ca.hostname}:${ca.port}`,
      root: pki.root,
      log,
      refreshMs: options.refreshMs ?? 0,
      timeoutMs: 2000,
    }),
    store: new UploadStore(dataDir, options.store),
    log,
    print: (line) => printed.push(line),
    port: 0,
    ...(options.protocol ? { protocol: options.protocol } : {}),
    ...(options.records ? { records: options.records } : {}),
    ...(options.handshakeTimeoutMs ? { handshakeTimeoutMs: options.handshakeTimeoutMs } : {}),
    ...(options.sessionTimeoutMs ? { sessionTimeoutMs: options.sessionTimeoutMs } : {}),
    ...(options.handshakeLimit ? { handshakeLimit: options.handshakeLimit } : {}),
  });
  return {
    server,
    addr: { hostname: "127.0.0.1", port: server.port },
    dataDir,
    lines,
    printed,
    cert,
    keyPem,
    async [Symbol.asyncDispose]() {
      await server.close();
      if (!options.dataDir) await Deno.remove(dataDir, { recursive: true }).catch(() => {});
    },
  };
}

export async function identity(home: string): Promise<StudentIdentity> {
  return await loadIdentity(home);
}

/** Every file under `dir`, relative to it. */
export async function listFiles(dir: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (d: string, prefix: string) => {
    for await (const e of Deno.readDir(d)) {
      if (e.isDirectory) await walk(`${d}/${e.name}`, `${prefix}${e.name}/`);
      else out.push(`${prefix}${e.name}`);
    }
  };
  await walk(dir, "").catch((err) => {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  });
  return out.sort();
}

/** Writes a file of `size` bytes of pseudo-random data (1 MiB pattern, varied per MiB). */
export async function writeTestFile(path: string, size: number): Promise<void> {
  using file = await Deno.open(path, { write: true, create: true, truncate: true });
  const block = crypto.getRandomValues(new Uint8Array(65536));
  const mib = new Uint8Array(1024 * 1024);
  for (let i = 0; i < 16; i++) mib.set(block, i * 65536);
  let written = 0;
  let n = 0;
  while (written < size) {
    mib[0] = n & 0xff;
    mib[1] = (n >> 8) & 0xff;
    n++;
    const part = mib.subarray(0, Math.min(mib.length, size - written));
    let off = 0;
    while (off < part.length) off += await file.write(part.subarray(off));
    written += part.length;
  }
}

/** SHA-256 of a file, streamed. */
export async function fileSha256(path: string): Promise<string> {
  const hash = createHash("sha256");
  using file = await Deno.open(path, { read: true });
  const buf = new Uint8Array(1024 * 1024);
  for (;;) {
    const n = await file.read(buf);
    if (n === null) break;
    hash.update(buf.subarray(0, n));
  }
  return hash.digest("hex");
}
