/**
 * Shared test fixtures: temporary directories, a CA with its server on port 0, students and
 * servers with real certificates, and actors run as real processes.
 */

import { CertificateAuthority, serveCa, storeCertificate, storeKey } from "../../lib/ca/mod.ts";
import {
  Changes,
  denoCommand,
  denoRunArgs,
  ensureDir,
  errorMessage,
  hasCommand,
  type LogSink,
  type ProcessOptions,
  type ProcessResult,
  PROJECT_ROOT as ROOT,
  runCommand,
  RunningProcess,
  spawnDeno,
  StepLog,
  writeFileAtomic,
  writeSecretFile,
} from "../../lib/runtime/mod.ts";
import {
  type Certificate,
  certificatePem,
  createCrl,
  createCsr,
  type Crl,
  der,
  exportPrivateKeyPem,
  importSigningKey,
} from "../../lib/pki/mod.ts";
import type { Server } from "../../lib/net/mod.ts";
import { testKeyPair } from "./keys.ts";

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

/**
 * A logger that keeps its lines for assertions (and stays quiet); `changes` is notified of each
 * line, for `waitFor`.
 */
export function memoryLog(actor: string): { log: StepLog; lines: string[]; changes: Changes } {
  const lines: string[] = [];
  const changes = new Changes();
  const sink: LogSink = (line) => {
    lines.push(line);
    changes.notify();
  };
  return { log: new StepLog(actor, { sink, noTime: true }), lines, changes };
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
    const ca = await CertificateAuthority.open(`${dir}/ca`, {
      rootKeys: await testKeyPair(),
    });
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

  /** The root's private key, for tests that sign what the CA would not (a crafted cert or CRL). */
  async rootKey(): Promise<CryptoKey> {
    return await importSigningKey(await Deno.readTextFile(`${this.dir}/ca/cuhk.key`));
  }

  /**
   * A CRL signed by the root with a chosen number, listing `revoked` (default none), issued at
   * `now` (default now) and valid for `validityMs` (createCrl's default: a day).
   */
  async signCrl(
    crlNumber: number,
    options: { revoked?: readonly Certificate[]; now?: Date; validityMs?: number } = {},
  ): Promise<Crl> {
    return await createCrl({
      issuer: this.root,
      issuerKey: await this.rootKey(),
      entries: (options.revoked ?? []).map((c) => ({
        serialNumber: c.serialNumber,
        revocationDate: new Date(),
      })),
      crlNumber,
      ...(options.now ? { now: options.now } : {}),
      ...(options.validityMs ? { validityMs: options.validityMs } : {}),
    });
  }

  /** `127.0.0.1:PORT` of the CA server. */
  get caAddr(): string {
    return `127.0.0.1:${this.server.port}`;
  }

  /** Enrols a student directly (no network) and writes its home like `student enroll` does. */
  async student(sid: string, keys?: CryptoKeyPair): Promise<TestStudent> {
    const k = keys ?? await testKeyPair();
    const csr = await createCsr(k, sid);
    const { code } = this.ca.createCode(sid);
    const cert = await this.ca.enrol({ sid, code, csr: der(csr) });
    const home = `${this.dir}/students/${sid}`;
    const keyPem = await exportPrivateKeyPem(k.privateKey);
    await storeKey(home, keyPem);
    await storeCertificate(home, cert, this.root);
    return { sid, home, keyPem, cert };
  }

  /**
   * Issues a server certificate as `ca issue` does (SAN: `name`, each of `dnsNames` and
   * `ipAddresses`), written to `DIR/NAME.{cer,key}`.
   */
  async serverCert(
    name: string,
    ipAddresses: string[] = ["127.0.0.1"],
    dnsNames: string[] = [],
  ): Promise<TestServerCert> {
    const { cert, keyPem } = await this.ca.issueServer({
      name,
      dnsNames,
      ipAddresses,
      keys: await testKeyPair(),
    });
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

/** What a finished process left: its exit status and output. */
export type RunResult = ProcessResult;

/** The permissions actors get in tests: loopback only, files anywhere (temp dirs). */
export const ACTOR_PERMISSIONS = [
  "--allow-net=127.0.0.1,localhost,[::1]",
  "--allow-read",
  "--allow-write",
];

interface ActorOptions {
  cwd?: string;
  permissions?: string[];
  env?: Record<string, string>;
}

/** The process options for an actor started as the tests start them. */
function actorOptions(script: string, options: ActorOptions): ProcessOptions {
  return { name: script, cwd: options.cwd ?? ROOT, ...(options.env ? { env: options.env } : {}) };
}

/**
 * Runs an actor script (`actors/ca.ts`, …) as a real process with `args`, optional standard input,
 * and a time limit; returns its exit status and output.
 */
export async function runActor(
  script: string,
  args: string[],
  options: ActorOptions & { stdin?: string; timeoutMs?: number } = {},
): Promise<RunResult> {
  return await spawnDeno(`${ROOT}/${script}`, args, {
    ...actorOptions(script, options),
    permissions: options.permissions ?? ACTOR_PERMISSIONS,
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
  }).result(options.timeoutMs ?? 60_000);
}

/**
 * A long-running actor process (a server), with its output collected and a clean stop: lib's
 * process runner (`waitFor` wakes on each chunk of output), started as the tests start actors.
 */
export class ActorProcess extends RunningProcess {
  constructor(script: string, args: string[], options: ActorOptions = {}) {
    super(
      denoCommand(),
      denoRunArgs(`${ROOT}/${script}`, args, options.permissions ?? ACTOR_PERMISSIONS),
      actorOptions(script, options),
    );
  }

  /** Waits until standard error (or output) matches `pattern`; returns the match. */
  override async waitFor(pattern: RegExp, timeoutMs = 30_000): Promise<RegExpMatchArray> {
    try {
      return await super.waitFor(pattern, timeoutMs);
    } catch (err) {
      throw new Error(`${errorMessage(err)}; stderr so far:\n${this.stderr}`);
    }
  }
}

/** Whether a command is installed (for interop tests, which `.ci/run` installs). */
export { hasCommand };

/** Runs a command and returns its status and output. */
export async function run(
  cmd: string,
  args: string[],
  options: { cwd?: string; stdin?: string } = {},
): Promise<RunResult> {
  return await runCommand(cmd, args, {
    cwd: options.cwd ?? ROOT,
    ...(options.stdin !== undefined ? { stdin: options.stdin } : {}),
  });
}

/**
 * Runs a probe script of tests/_fixtures in its own Deno process with `permissions` (what the
 * test process itself lacks, such as `--allow-ffi`), and returns the JSON it printed; a probe that
 * fails fails the test with its standard error.
 */
export async function runProbe(script: string, permissions: string[]): Promise<unknown> {
  const r = await run(Deno.execPath(), [
    "run",
    "--quiet",
    ...permissions,
    `${ROOT}/tests/_fixtures/${script}`,
  ]);
  if (r.code !== 0) throw new Error(`${script} exited with ${r.code}: ${r.stderr}`);
  return JSON.parse(r.stdout);
}

/**
 * The `--allow-…` flags of a task in deno.json, with `$NAME` replaced from `vars` as `deno task`
 * expands it: tests run a task's script with exactly the permissions the task grants.
 */
export async function taskPermissions(
  task: string,
  vars: Record<string, string> = {},
): Promise<string[]> {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const entry = config.tasks?.[task];
  const command: unknown = typeof entry === "string" ? entry : entry?.command;
  if (typeof command !== "string") throw new Error(`No task '${task}' in deno.json`);
  return command.split(/\s+/).filter((w) => w.startsWith("--allow-")).map((w) =>
    w.replace(/\$([A-Z_][A-Z0-9_]*)/g, (_, name: string) => {
      const value = vars[name];
      if (value === undefined) throw new Error(`Task '${task}' uses $${name}: give its value`);
      return value;
    })
  );
}

/** Deno's cache folder, for a child run with another HOME (which would otherwise move it). */
export async function denoDir(): Promise<string> {
  const res = await runCommand(Deno.execPath(), ["info", "--json"]);
  if (res.code !== 0) throw new Error(`deno info failed: ${res.stderr}`);
  return JSON.parse(res.stdout).denoDir;
}

/**
 * Runs `fn` with `beforeVerify` awaited before each `crypto.subtle.verify` (which then runs as it
 * would): to count the signature checks made, or to run other work at that exact moment.
 */
export async function withVerifyHook<T>(
  beforeVerify: () => Promise<void> | void,
  fn: () => Promise<T>,
): Promise<T> {
  const subtle = crypto.subtle;
  const verify = subtle.verify;
  Object.defineProperty(subtle, "verify", {
    configurable: true,
    value: async (...args: Parameters<SubtleCrypto["verify"]>) => {
      await beforeVerify();
      return await verify.apply(subtle, args);
    },
  });
  try {
    return await fn();
  } finally {
    delete (subtle as { verify?: unknown }).verify;
  }
}
