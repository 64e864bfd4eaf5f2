/**
 * Shared test fixtures: temporary directories, a CA with its server on port 0, students and
 * servers with real certificates, and actors run as real processes.
 */

import { CertificateAuthority, serveCa, storeCertificate, storeKey } from "../../lib/ca/mod.ts";
import {
  ensureDir,
  type LogSink,
  PROJECT_ROOT as ROOT,
  StepLog,
  writeFileAtomic,
  writeSecretFile,
} from "../../lib/runtime/mod.ts";
import {
  type Certificate,
  certificatePem,
  createCsr,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
} from "../../lib/pki/mod.ts";
import type { Server } from "../../lib/net/mod.ts";

export { ROOT };
/** The project's top folder. */
export const PROJECT_ROOT = ROOT;

/** A temporary directory removed when disposed. */
export async function tempDir(prefix = "lab-test-"): Promise<AsyncDisposable & { path: string }> {
  const path = await Deno.makeTempDir({ prefix });
  return {
    path,
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

/** A logger that keeps its lines for assertions (and stays quiet). */
export function memoryLog(actor: string): { log: StepLog; lines: string[] } {
  const lines: string[] = [];
  const sink: LogSink = (line) => lines.push(line);
  return { log: new StepLog(actor, { sink, noTime: true }), lines };
}

export interface TestStudent {
  sid: string;
  home: string;
  keyPem: string;
  cert: Certificate;
}

export interface TestServerCert {
  name: string;
  certPath: string;
  keyPath: string;
  rootPath: string;
  cert: Certificate;
  keyPem: string;
}

/**
 * A CA in a temporary directory (a 2048-bit root to keep tests quick) with its server on port 0.
 * Dispose it to stop the server and remove the directory.
 */
export class TestPki implements AsyncDisposable {
  readonly dir: string;
  readonly ca: CertificateAuthority;
  readonly server: Server;
  readonly lines: string[];

  private constructor(dir: string, ca: CertificateAuthority, server: Server, lines: string[]) {
    this.dir = dir;
    this.ca = ca;
    this.server = server;
    this.lines = lines;
  }

  static async start(
    options: { openEnrolment?: boolean; maxPerAddress?: number } = {},
  ): Promise<TestPki> {
    const dir = await Deno.makeTempDir({ prefix: "lab-pki-" });
    const ca = await CertificateAuthority.open(`${dir}/ca`, { rootBits: 2048 });
    const { log, lines } = memoryLog("CUHK");
    const server = serveCa({
      ca,
      log,
      port: 0,
      openEnrolment: options.openEnrolment ?? false,
      ...(options.maxPerAddress ? { maxPerAddress: options.maxPerAddress } : {}),
    });
    return new TestPki(dir, ca, server, lines);
  }

  get root(): Certificate {
    return this.ca.root;
  }

  get rootPath(): string {
    return this.ca.rootPath;
  }

  /** `127.0.0.1:PORT` of the CA server. */
  get caAddr(): string {
    return `127.0.0.1:${this.server.port}`;
  }

  /** Enrols a student directly (no network) and writes its home like `student enroll` does. */
  async student(sid: string, keys?: CryptoKeyPair): Promise<TestStudent> {
    const k = keys ?? await generateRsaKeyPair(2048);
    const csr = await createCsr(k, sid);
    const { code } = this.ca.createCode(sid);
    const cert = await this.ca.enrol({ sid, code, csr: der(csr) });
    const home = `${this.dir}/students/${sid}`;
    const keyPem = await exportPrivateKeyPem(k.privateKey);
    await storeKey(home, keyPem);
    await storeCertificate(home, cert, this.root);
    return { sid, home, keyPem, cert };
  }

  /** Issues a server certificate as `ca issue` does, written to `DIR/NAME.{cer,key}`. */
  async serverCert(name: string, ipAddresses: string[] = ["127.0.0.1"]): Promise<TestServerCert> {
    const { cert, keyPem } = await this.ca.issueServer({ name, ipAddresses });
    const out = `${this.dir}/servers/${name}`;
    await ensureDir(out);
    await writeSecretFile(`${out}/${name}.key`, keyPem);
    await writeFileAtomic(`${out}/${name}.cer`, certificatePem(cert));
    await writeFileAtomic(`${out}/cuhk.cer`, this.ca.rootPem);
    return {
      name,
      cert,
      keyPem,
      certPath: `${out}/${name}.cer`,
      keyPath: `${out}/${name}.key`,
      rootPath: `${out}/cuhk.cer`,
    };
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.server.close();
    this.ca.close();
    await Deno.remove(this.dir, { recursive: true }).catch(() => {});
  }
}

export interface RunResult {
  code: number;
  stdout: string;
  stderr: string;
}

/** The permissions actors get in tests: loopback only, files anywhere (temp dirs). */
export const ACTOR_PERMISSIONS = [
  "--allow-net=127.0.0.1,localhost,[::1]",
  "--allow-read",
  "--allow-write",
];

/**
 * Runs an actor script (`actors/ca.ts`, …) as a real process with `args`, optional standard input,
 * and a time limit; returns its exit status and output.
 */
export async function runActor(
  script: string,
  args: string[],
  options: {
    cwd?: string;
    stdin?: string;
    timeoutMs?: number;
    permissions?: string[];
    env?: Record<string, string>;
  } = {},
): Promise<RunResult> {
  const cmd = new Deno.Command(Deno.execPath(), {
    args: [
      "run",
      "--quiet",
      ...(options.permissions ?? ACTOR_PERMISSIONS),
      `${ROOT}/${script}`,
      ...args,
    ],
    cwd: options.cwd ?? ROOT,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
    ...(options.env ? { env: options.env } : {}),
    signal: AbortSignal.timeout(options.timeoutMs ?? 60_000),
  });
  const child = cmd.spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}

/** A long-running actor process (a server), with its output collected and a clean stop. */
export class ActorProcess implements AsyncDisposable {
  readonly child: Deno.ChildProcess;
  #stderr = "";
  #stdout = "";
  readonly #done: Promise<Deno.CommandStatus>;

  constructor(
    script: string,
    args: string[],
    options: { cwd?: string; permissions?: string[]; env?: Record<string, string> } = {},
  ) {
    this.child = new Deno.Command(Deno.execPath(), {
      args: [
        "run",
        "--quiet",
        ...(options.permissions ?? ACTOR_PERMISSIONS),
        `${ROOT}/${script}`,
        ...args,
      ],
      cwd: options.cwd ?? ROOT,
      stdin: "null",
      stdout: "piped",
      stderr: "piped",
      ...(options.env ? { env: options.env } : {}),
    }).spawn();
    const collect = async (stream: ReadableStream<Uint8Array>, add: (s: string) => void) => {
      for await (const chunk of stream.pipeThrough(new TextDecoderStream())) add(chunk);
    };
    const outDone = collect(this.child.stdout, (s) => (this.#stdout += s));
    const errDone = collect(this.child.stderr, (s) => (this.#stderr += s));
    this.#done = Promise.all([this.child.status, outDone, errDone]).then(([s]) => s);
  }

  get stderr(): string {
    return this.#stderr;
  }

  get stdout(): string {
    return this.#stdout;
  }

  /** Waits until standard error matches `pattern`; returns the match. */
  async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      const m = this.#stderr.match(pattern) ?? this.#stdout.match(pattern);
      if (m) return m;
      await new Promise((r) => setTimeout(r, 25));
    }
    throw new Error(`Timed out waiting for ${pattern}; stderr so far:\n${this.#stderr}`);
  }

  /** Sends a signal (default SIGINT) and waits for the process to exit. */
  async stop(signal: Deno.Signal = "SIGINT"): Promise<Deno.CommandStatus> {
    try {
      this.child.kill(signal);
    } catch {
      // Already exited.
    }
    return await this.#done;
  }

  get status(): Promise<Deno.CommandStatus> {
    return this.#done;
  }

  async [Symbol.asyncDispose](): Promise<void> {
    await this.stop("SIGKILL");
  }
}

/** Whether a command is installed (for interop tests, which `.ci/run` installs). */
export async function hasCommand(name: string): Promise<boolean> {
  try {
    const out = await new Deno.Command("sh", {
      args: ["-c", `command -v ${name}`],
      stdout: "null",
      stderr: "null",
    })
      .output();
    return out.success;
  } catch {
    return false;
  }
}

/** Runs a command and returns its status and output. */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; stdin?: string } = {},
): Promise<RunResult> {
  const child = new Deno.Command(cmd, {
    args,
    cwd: options.cwd ?? ROOT,
    stdin: options.stdin === undefined ? "null" : "piped",
    stdout: "piped",
    stderr: "piped",
  }).spawn();
  if (options.stdin !== undefined) {
    const w = child.stdin.getWriter();
    await w.write(new TextEncoder().encode(options.stdin));
    await w.close();
  }
  const out = await child.output();
  const dec = new TextDecoder();
  return { code: out.code, stdout: dec.decode(out.stdout), stderr: dec.decode(out.stderr) };
}
