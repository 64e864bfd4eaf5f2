/**
 * `deno task fuzz`: drives every decoder of the lab with generated and mutated inputs (fast-check):
 * the frame reader, the codec of each protocol (CA, Blackboard handshake and session, bank), the
 * chat's JSON messages, the CSR and certificate entry points, and the amount parser.
 *
 * The property, for every input: the decoder returns, or throws its own typed error (FrameError and
 * its kinds, CsrError, CertificateError, AmountError); anything else is a failure, reported with
 * the smallest input fast-check shrinks it to. Each target runs in a worker with a time budget, so
 * a decoder that hangs is stopped and reported; the worker's heap after the run is reported too.
 * Inputs are half random bytes, half mutations (bit flips, byte changes, cuts, inserted bytes,
 * extreme length prefixes) of valid encodings, so the decoders are exercised past their first
 * check. A short run of each target is part of `deno task test` (tests/tasks/fuzz_test.ts).
 */

import "reflect-metadata";
import fc from "fast-check";
import { AmountError, bankProtocol, parseAmount } from "../lib/bank/mod.ts";
import { blackboardProtocol, sessionProtocol } from "../lib/blackboard/mod.ts";
import { caProtocol } from "../lib/ca/mod.ts";
import { toHex } from "../lib/crypto/mod.ts";
import {
  decodeClientMessage,
  decodeServerMessage,
  encodeClientMessage,
  encodeServerMessage,
} from "../lib/chat/mod.ts";
import {
  basicConstraintsCa,
  CertificateError,
  certificateOutline,
  checkStudentCsr,
  createCrl,
  createCsr,
  createRoot,
  CsrError,
  der,
  extendedKeyUsages,
  generateRsaKeyPair,
  issueCertificate,
  keyUsageFlags,
  parseCertificate,
  parseCsr,
  signedParts,
  x509,
} from "../lib/pki/mod.ts";
import { parseCommand, runMain, UsageError } from "../lib/runtime/mod.ts";
import {
  type ByteStream,
  encodeFrame,
  FramedStream,
  FrameError,
  type MessageSpecs,
  type Protocol,
} from "../lib/wire/mod.ts";

/** One decoder under test: its valid seeds and how to feed it one input. */
interface Target {
  name: string;
  /** Valid inputs to mutate. */
  seeds(): Promise<Uint8Array[]>;
  /** Feeds one input; resolves or throws. */
  run(input: Uint8Array): unknown;
  /** The decoder's own errors: any other throw fails the property. */
  expected(err: unknown): boolean;
}

const isFrameError = (err: unknown) => err instanceof FrameError;
const enc = new TextEncoder();

/** One valid encoding of every message of a protocol, fields filled by kind. */
function protocolSeeds<S extends MessageSpecs>(protocol: Protocol<S>): Uint8Array[] {
  const out: Uint8Array[] = [];
  for (const [type, spec] of Object.entries(protocol.messages)) {
    const values: Record<string, unknown> = {};
    for (const [field, kind] of Object.entries(spec.fields)) {
      values[field] = kind === "uint"
        ? 7
        : kind === "text"
        ? "SID:1155123456 requests to upload report !"
        : new Uint8Array(40).fill(0xab);
    }
    // deno-lint-ignore no-explicit-any
    out.push(protocol.encode(type as any, values as any));
  }
  return out;
}

function codecTarget<S extends MessageSpecs>(name: string, protocol: Protocol<S>): Target {
  return {
    name,
    seeds: () => Promise.resolve(protocolSeeds(protocol)),
    run: (input) => protocol.decode(input),
    expected: isFrameError,
  };
}

/** A byte stream that yields `bytes` in chunks of the given sizes, then ends. */
function memoryStream(bytes: Uint8Array, chunk: number): ByteStream {
  let off = 0;
  return {
    read(buf: Uint8Array): Promise<number | null> {
      if (off >= bytes.length) return Promise.resolve(null);
      const n = Math.min(buf.length, chunk, bytes.length - off);
      buf.set(bytes.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
    write: (b: Uint8Array) => Promise.resolve(b.length),
    close() {},
  } as ByteStream;
}

let pkiSeeds: Promise<{ csrs: Uint8Array[]; certs: Uint8Array[]; crls: Uint8Array[] }> | undefined;
/** A valid CSR and certificate (made once; RSA key generation is the slow part). */
function pkiMaterial() {
  pkiSeeds ??= (async () => {
    const keys = await generateRsaKeyPair(2048);
    const csr = der(await createCsr(keys, "1155123456"));
    const root = await createRoot({ bits: 2048 });
    const crl = await createCrl({
      issuer: root.cert,
      issuerKey: root.keys.privateKey,
      entries: [{ serialNumber: "0a0b0c", revocationDate: new Date() }],
      crlNumber: 3,
    });
    const student = await issueCertificate({
      publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
      profile: { kind: "student", sid: "1155123456" },
      issuer: root.cert,
      issuerKey: root.keys.privateKey,
    });
    return { csrs: [csr], certs: [der(root.cert), der(student)], crls: [der(crl)] };
  })();
  return pkiSeeds;
}

/** How @peculiar/x509 reads an extension value as each of the three the certificate checks read. */
function libraryReading(value: Uint8Array) {
  const as = <T>(read: (raw: ArrayBuffer) => T): T | undefined => {
    try {
      return read(new x509.Extension("2.5.29.99", false, new Uint8Array(value)).rawData);
    } catch {
      return undefined;
    }
  };
  return {
    ca: as((raw) => new x509.BasicConstraintsExtension(raw).ca),
    usages: as((raw) => new x509.KeyUsagesExtension(raw).usages & 0x1ff),
    purposes: as((raw) =>
      [...new x509.ExtendedKeyUsageExtension(raw).usages].map(String).join(" ")
    ),
  };
}

/** Whether `part` is a view of `input`'s own bytes. */
function within(part: Uint8Array, input: Uint8Array): boolean {
  return part.buffer === input.buffer && part.byteOffset >= input.byteOffset &&
    part.byteOffset + part.length <= input.byteOffset + input.length;
}

export const TARGETS: readonly Target[] = [
  {
    name: "frame",
    seeds: () =>
      Promise.resolve([
        encodeFrame(caProtocol.encode("crlRequest", {})),
        Uint8Array.of(0, 0, 0, 3, 1, 2, 3, 0, 0, 0, 1, 9),
      ]),
    // Every frame of the input, read in chunks of 1-7 bytes (the first byte picks the size).
    async run(input) {
      const stream = new FramedStream(memoryStream(input, 1 + (input[0] ?? 0) % 7), {
        maxFrame: 4096,
        readTimeoutMs: 1000,
      });
      while ((await stream.readFrame()) !== null) { /* next frame */ }
    },
    expected: isFrameError,
  },
  codecTarget("ca", caProtocol),
  codecTarget("blackboard", blackboardProtocol),
  codecTarget("blackboard-session", sessionProtocol),
  codecTarget("bank", bankProtocol),
  {
    name: "chat-client",
    seeds: () =>
      Promise.resolve([
        encodeClientMessage({ type: "hello", nick: "alice" } as never),
        encodeClientMessage({ type: "say", text: "hello everyone" } as never),
      ]),
    run: (input) => decodeClientMessage(input),
    expected: isFrameError,
  },
  {
    name: "chat-server",
    seeds: () =>
      Promise.resolve([
        encodeServerMessage(
          { type: "said", from: "alice", text: "hi", time: 1764266400000 } as never,
        ),
      ]),
    run: (input) => decodeServerMessage(input),
    expected: isFrameError,
  },
  {
    name: "csr",
    seeds: async () => (await pkiMaterial()).csrs,
    run: async (input) => await checkStudentCsr(parseCsr(input)),
    expected: (err) => err instanceof CsrError || err instanceof CertificateError,
  },
  {
    name: "certificate",
    seeds: async () => (await pkiMaterial()).certs,
    run: (input) => parseCertificate(input),
    expected: (err) => err instanceof CertificateError,
  },
  {
    // The outline OpenSSL's signature checks read (lib/pki/der.ts): never a throw, and every part
    // it returns lies within the input.
    name: "signed-parts",
    seeds: async () => {
      const m = await pkiMaterial();
      return [...m.certs, ...m.csrs, ...m.crls];
    },
    run: (input) => {
      for (const kind of ["certificate", "crl", "csr"] as const) {
        const parts = signedParts(input, kind);
        for (const part of parts ? [parts.tbs, parts.algorithm, parts.inner] : []) {
          if (part === undefined) continue;
          if (!within(part, input)) {
            throw new Error(`signedParts(${kind}) returned bytes outside its input`);
          }
        }
      }
    },
    expected: () => false,
  },
  {
    // The names, key and extensions the certificate checks read (lib/pki/der.ts), and the three
    // extensions they decode: never a throw, and every part lies within the input.
    name: "certificate-outline",
    seeds: async () => (await pkiMaterial()).certs,
    run: (input) => {
      const outline = certificateOutline(input);
      if (!outline) return;
      const parts = [outline.issuer, outline.subject, outline.publicKey];
      for (const ext of outline.extensions) {
        parts.push(ext.value);
        const read = {
          ca: basicConstraintsCa(ext.value),
          usages: keyUsageFlags(ext.value),
          purposes: extendedKeyUsages(ext.value)?.join(" "),
        };
        // Where both read a value, the outline must read what the library reads (the library
        // reads a key usage of more than four bytes wrongly: parseInt over all its bits).
        const library = libraryReading(ext.value);
        const same = (ours: unknown, theirs: unknown) =>
          ours === undefined || theirs === undefined || ours === theirs;
        if (
          !same(read.ca, library.ca) ||
          (ext.value.length <= 6 && !same(read.usages, library.usages)) ||
          !same(read.purposes, library.purposes)
        ) {
          throw new Error(
            `the outline and @peculiar/x509 read ${toHex(ext.value)} differently: ${
              JSON.stringify(read)
            } against ${JSON.stringify(library)}`,
          );
        }
      }
      for (const part of parts) {
        if (!within(part, input)) {
          throw new Error("certificateOutline returned bytes outside its input");
        }
      }
    },
    expected: () => false,
  },
  {
    name: "amount",
    seeds: () =>
      Promise.resolve(
        ["10.00", "5", "0.01", "99999999.99", "1,000", " 5 ", "1e3"].map((s) => enc.encode(s)),
      ),
    run: (input) => parseAmount(new TextDecoder().decode(input)),
    expected: (err) => err instanceof AmountError,
  },
];

/** A mutation of a valid input. */
type Mutation =
  | { op: "flip"; at: number; bit: number }
  | { op: "set"; at: number; value: number }
  | { op: "cut"; at: number }
  | { op: "insert"; at: number; bytes: Uint8Array }
  | { op: "length"; at: number; value: number };

const mutation: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ op: fc.constant("flip" as const), at: fc.nat(), bit: fc.nat(7) }),
  fc.record({ op: fc.constant("set" as const), at: fc.nat(), value: fc.nat(255) }),
  fc.record({ op: fc.constant("cut" as const), at: fc.nat() }),
  fc.record({
    op: fc.constant("insert" as const),
    at: fc.nat(),
    bytes: fc.uint8Array({ minLength: 1, maxLength: 16 }),
  }),
  fc.record({
    op: fc.constant("length" as const),
    at: fc.nat(),
    value: fc.constantFrom(0, 1, 0x7fffffff, 0xffffffff, 0x10000, 65_537),
  }),
);

function mutate(seed: Uint8Array, mutations: Mutation[]): Uint8Array {
  let out = seed.slice();
  for (const m of mutations) {
    if (out.length === 0) break;
    const at = m.at % out.length;
    if (m.op === "flip") out[at]! ^= 1 << m.bit;
    else if (m.op === "set") out[at] = m.value;
    else if (m.op === "cut") out = out.slice(0, at);
    else if (m.op === "insert") {
      const next = new Uint8Array(out.length + m.bytes.length);
      next.set(out.subarray(0, at));
      next.set(m.bytes, at);
      next.set(out.subarray(at), at + m.bytes.length);
      out = next;
    } else if (out.length >= 4) {
      const pos = Math.min(at, out.length - 4);
      new DataView(out.buffer, out.byteOffset).setUint32(pos, m.value);
    }
  }
  return out;
}

/** Random bytes and mutated seeds, half and half. */
function inputs(seeds: Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const mutated = fc.tuple(
    fc.constantFrom(...seeds),
    fc.array(mutation, { minLength: 1, maxLength: 4 }),
  )
    .map(([seed, ms]) => mutate(seed, ms));
  return fc.oneof(fc.uint8Array({ maxLength: 600 }), mutated);
}

export interface FuzzResult {
  target: string;
  runs: number;
  ms: number;
  /** The slowest single input. */
  slowestMs: number;
  /** A failure: the (shrunk) input and what was thrown. */
  failure?: string;
}

/** Runs `runs` inputs through one target; the result says whether the property held. */
export async function fuzzTarget(target: Target, runs: number, seed?: number): Promise<FuzzResult> {
  const seeds = await target.seeds();
  const started = performance.now();
  let slowestMs = 0;
  const property = fc.asyncProperty(inputs(seeds), async (input) => {
    const t0 = performance.now();
    try {
      await target.run(input);
    } catch (err) {
      if (!target.expected(err)) {
        throw new Error(
          `threw ${err instanceof Error ? `${err.name}: ${err.message}` : String(err)}`,
        );
      }
    } finally {
      slowestMs = Math.max(slowestMs, performance.now() - t0);
    }
  });
  const details = await fc.check(property, {
    numRuns: runs,
    ...(seed !== undefined ? { seed } : {}),
    endOnFailure: false,
  });
  const result: FuzzResult = {
    target: target.name,
    runs: details.numRuns,
    ms: performance.now() - started,
    slowestMs,
  };
  if (details.failed) {
    const input = details.counterexample?.[0] as Uint8Array | undefined;
    result.failure =
      `${details.errorInstance instanceof Error ? details.errorInstance.message : ""}` +
      ` on input ${
        input ? `[${[...input.subarray(0, 64)].join(",")}${input.length > 64 ? ",…" : ""}]` : "?"
      }` +
      ` (seed ${details.seed}, path ${details.counterexamplePath})`;
  }
  return result;
}

// In a worker: run the target named in the message and post the result.
const inWorker = typeof (globalThis as { WorkerGlobalScope?: unknown }).WorkerGlobalScope !==
  "undefined";
if (inWorker) {
  (globalThis as unknown as Worker).onmessage = async (e: MessageEvent) => {
    const { name, runs, seed } = e.data as { name: string; runs: number; seed?: number };
    const target = TARGETS.find((t) => t.name === name)!;
    const result = await fuzzTarget(target, runs, seed);
    const heapMiB = Deno.memoryUsage().heapUsed / 1024 ** 2;
    (globalThis as unknown as Worker).postMessage({ ...result, heapMiB });
  };
}

const USAGE = `Usage: deno task fuzz [--runs N] [--target NAME]... [--budget SECS] [--seed N]

Feeds every decoder generated and mutated inputs; each must return or throw its own typed error.
Targets: ${TARGETS.map((t) => t.name).join(", ")}.

Options:
  --runs N        inputs per target (default 1000000)
  --target NAME   only this target (repeatable)
  --budget SECS   time allowed per target before it counts as hung (default 900)
  --seed N        fast-check's seed, to replay a run
`;

async function main(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "fuzz",
    usage: USAGE,
    options: {
      runs: { type: "string", default: "1000000" },
      target: { type: "string", multiple: true },
      budget: { type: "string", default: "900" },
      seed: { type: "string" },
    },
  });
  if (!parsed) return 0;
  const runs = Number(parsed.values.runs);
  const budget = Number(parsed.values.budget);
  if (!Number.isSafeInteger(runs) || runs < 1) {
    throw new UsageError("--runs must be a positive whole number");
  }
  if (!Number.isSafeInteger(budget) || budget < 1) {
    throw new UsageError("--budget must be whole seconds");
  }
  const seed = parsed.values.seed === undefined ? undefined : Number(parsed.values.seed);
  const names = parsed.values.target ?? TARGETS.map((t) => t.name);
  for (const n of names) {
    if (!TARGETS.some((t) => t.name === n)) throw new UsageError(`unknown target '${n}'`);
  }
  let failed = 0;
  const started = performance.now();
  for (const name of names) {
    const worker = new Worker(import.meta.url, { type: "module" });
    const outcome = await new Promise<(FuzzResult & { heapMiB: number }) | "hung" | string>(
      (resolve) => {
        const timer = setTimeout(() => resolve("hung"), budget * 1000);
        worker.onmessage = (e) => {
          clearTimeout(timer);
          resolve(e.data);
        };
        worker.onerror = (e) => {
          clearTimeout(timer);
          e.preventDefault();
          resolve(`worker error: ${e.message}`);
        };
        worker.postMessage({ name, runs, ...(seed !== undefined ? { seed } : {}) });
      },
    );
    worker.terminate();
    if (typeof outcome === "string") {
      failed++;
      console.log(
        `FAIL ${name}: ${outcome === "hung" ? `no result within ${budget} s (a hang)` : outcome}`,
      );
      continue;
    }
    const rate = Math.round(outcome.runs / (outcome.ms / 1000));
    const line =
      `${name.padEnd(19)} ${outcome.runs} inputs in ${(outcome.ms / 1000).toFixed(1)} s ` +
      `(${rate}/s), slowest ${outcome.slowestMs.toFixed(1)} ms, heap ${
        outcome.heapMiB.toFixed(0)
      } MiB`;
    if (outcome.failure) {
      failed++;
      console.log(`FAIL ${line}\n     ${outcome.failure}`);
    } else {
      console.log(`ok   ${line}`);
    }
  }
  console.log(
    `fuzz: ${names.length - failed} of ${names.length} targets held, in ${
      ((performance.now() - started) / 1000).toFixed(0)
    } s`,
  );
  return failed === 0 ? 0 : 1;
}

// A worker runs this module as its main module too: only the first process runs `main`.
if (import.meta.main && !inWorker) await runMain("fuzz", main);
