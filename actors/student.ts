#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * The student (system 1): enrolment with the CA (steps 1–2), then messages and report uploads to
 * Blackboard (steps 3–6).
 *
 *     deno task student enroll --sid SID --code CODE
 *     deno task student send --sid SID --message TEXT
 *     deno task student upload --sid SID --file PATH
 */

import {
  BLACKBOARD_NAME,
  BLACKBOARD_PORT,
  openSeedSession,
  openSession,
  ProgressBar,
  RECORD_KINDS,
  recordKindOf,
} from "../lib/blackboard/mod.ts";
import {
  CA_PORT,
  homePaths,
  loadIdentity,
  loadRoot,
  requestCertificate,
  storeCertificate,
  storeKey,
} from "../lib/ca/mod.ts";
import { toBytes } from "../lib/crypto/mod.ts";
import {
  certificateFingerprint,
  certificatePem,
  createCsr,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
  importSigningKey,
  parseCsr,
  publicKeyOf,
  RSA_SIGN,
} from "../lib/pki/mod.ts";
import {
  dispatch,
  exists,
  parseCommand,
  parseHostPort,
  parseProtocolMode,
  parseStudentId,
  readTextFile,
  required,
  runMain,
  startOpenSslRsa,
  StepLog,
  UsageError,
  writeFileAtomic,
} from "../lib/runtime/mod.ts";

const DEFAULT_CA_CERT = "data/ca/cuhk.cer";

export function defaultHome(sid: string): string {
  return `data/students/${sid}`;
}

const USAGE = `The student (system 1)

Usage: deno task student COMMAND [options]

Commands:
  fingerprint  print the SHA-256 fingerprint of the root you were handed, to compare out of band
  enroll       make a key pair and CSR, enrol with the CA, store key and cert 2 (steps 1-2)
  send         open a session with Blackboard and send authenticated messages (steps 3-6)
  upload       upload a report to Blackboard in authenticated chunks, resumable (steps 3-6)

Run 'deno task student COMMAND --help' for a command's options.`;

/** The enrolment code from the first line of a file, or of standard input for `-`. */
async function readCodeFile(path: string): Promise<string> {
  const text = path === "-"
    ? await new Response(Deno.stdin.readable).text()
    : await readTextFile(path, "the enrolment code");
  const code = text.split(/\r?\n/).map((line) => line.trim()).find((line) => line !== "");
  if (code === undefined) {
    throw new UsageError(`--code-file ${path === "-" ? "- (standard input)" : path} holds no code`);
  }
  return code;
}

async function enrollCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "student enroll",
    usage: `Usage: deno task student enroll --sid SID (--code CODE | --code-file FILE) [options]
       deno task student enroll --sid SID --code CODE --csr FILE --out FILE [options]

STEP 1: makes an RSA key pair (2048 bits) and a CSR with CN = SID and sends it to the CA with the
one-time enrolment code. STEP 2: checks cert 2 (signed by the trusted root, for SID, carrying this
key) and stores key (mode 0600), certificate and root in the home directory.
With --csr, enrols a CSR made elsewhere (e.g. by 'openssl req') and writes cert 2 to --out.

Options:
  --sid SID            the student ID: exactly 10 digits
  --code CODE          the enrolment code from the CA operator ('ca code')
  --code-file FILE     read the code from FILE's first line instead ('-': standard input), so
                       that it does not show in the process list ('ps') like --code does
  --no-code            no code: only a seed-mode CA ('ca serve --protocol seed', open
                       enrolment) accepts that
  --ca HOST:PORT       the CA (default 127.0.0.1:${CA_PORT})
  --ca-cert FILE       the root to trust (default ${DEFAULT_CA_CERT})
  --home DIR           where key and certificates go (default data/students/SID)
  --csr FILE           enrol this CSR (PEM or DER) instead of making a key
  --out FILE           with --csr: where to write cert 2 (PEM)
  --quiet              log warnings and errors only`,
    options: {
      sid: { type: "string" },
      code: { type: "string" },
      "code-file": { type: "string" },
      "no-code": { type: "boolean", default: false },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      "ca-cert": { type: "string", default: DEFAULT_CA_CERT },
      home: { type: "string" },
      csr: { type: "string" },
      out: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  // Every argument is checked before anything is sent.
  const sid = parseStudentId(required(values.sid, "sid"));
  const given = (["code", "code-file", "no-code"] as const).filter((o) =>
    o === "no-code" ? values[o] : values[o] !== undefined
  );
  if (given.length > 1) {
    throw new UsageError(`${given.map((o) => `--${o}`).join(" and ")} disagree`);
  }
  if (given.length === 0) {
    throw new UsageError("missing required option --code (or --code-file FILE)");
  }
  const code = values["no-code"] ? "" : values.code ?? await readCodeFile(values["code-file"]!);
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  if ((values.csr === undefined) !== (values.out === undefined)) {
    throw new UsageError("--csr and --out go together");
  }
  if (values.csr !== undefined && values.home !== undefined) {
    throw new UsageError("--home does not apply with --csr (the key stays where the CSR was made)");
  }
  const root = await loadRoot(values["ca-cert"]);
  const log = new StepLog(`student ${sid}`, { quiet: values.quiet });

  if (values.csr !== undefined) {
    const raw = await Deno.readFile(values.csr).catch((err) => {
      throw new Error(`Cannot read CSR ${values.csr}: ${err.message}`);
    });
    const text = new TextDecoder().decode(raw);
    const csr = parseCsr(text.includes("-----BEGIN") ? text : raw);
    log.step(1, `sending CSR from ${values.csr} to the CA at ${ca.hostname}:${ca.port}`);
    const cert = await requestCertificate({
      ca,
      sid,
      code,
      csr: der(csr),
      publicKey: new Uint8Array(csr.publicKey.rawData),
      root,
    });
    await writeFileAtomic(values.out!, certificatePem(cert));
    log.step(2, `cert 2 verified against ${values["ca-cert"]}, written to ${values.out}`);
    console.log(`SID: ${sid} sign finished.`);
    return;
  }

  const home = values.home ?? defaultHome(sid);
  const paths = homePaths(home);
  if (await exists(paths.cert)) {
    throw new Error(`${home} already holds a certificate (${paths.cert}); choose another --home`);
  }
  // A key left by an earlier, failed attempt is reused: nothing is lost on failure.
  let keyPem: string;
  if (await exists(paths.key)) {
    keyPem = await readTextFile(paths.key, "the student's key");
    log.step(1, `reusing the key pair in ${paths.key} from an earlier attempt`);
  } else {
    const keys = await generateRsaKeyPair(2048);
    keyPem = await exportPrivateKeyPem(keys.privateKey);
    await storeKey(home, keyPem);
    log.step(1, `generated an RSA-2048 key pair, private key in ${paths.key} (mode 0600)`);
  }
  const spki = await publicKeyOf(keyPem);
  const keys: CryptoKeyPair = {
    privateKey: await importSigningKey(keyPem),
    publicKey: await crypto.subtle.importKey("spki", toBytes(spki), RSA_SIGN, true, ["verify"]),
  };
  const csr = await createCsr(keys, sid);
  log.step(1, `sending CSR (CN=${sid}) to the CA at ${ca.hostname}:${ca.port}`);
  const cert = await requestCertificate({
    ca,
    sid,
    code,
    csr: der(csr),
    publicKey: spki,
    root,
  });
  await storeCertificate(home, cert, root);
  log.step(
    2,
    `cert 2 (serial ${cert.serialNumber}) verified against ${
      values["ca-cert"]
    }, stored in ${paths.cert}`,
  );
  console.log(`SID: ${sid} sign finished.`);
}

const sessionOptions = {
  sid: { type: "string" },
  blackboard: { type: "string", default: `127.0.0.1:${BLACKBOARD_PORT}` },
  home: { type: "string" },
  records: { type: "string", default: "aes-gcm" },
  encrypt: { type: "boolean", default: false },
  protocol: { type: "string", default: "default" },
  "blackboard-name": { type: "string", default: BLACKBOARD_NAME },
  quiet: { type: "boolean", default: false },
} as const;

const SESSION_USAGE =
  `  --sid SID              the student ID (10 digits); key and cert 2 come from its home
  --blackboard HOST:PORT Blackboard (default 127.0.0.1:${BLACKBOARD_PORT})
  --home DIR             the student's home (default data/students/SID)
  --records KIND         aes-gcm (default) or hmac (MAC-only records, readable on the wire;
                         teaching only, Blackboard must allow it: 'blackboard serve --records hmac')
  --encrypt              deprecated, does nothing: AES-GCM records are the default
  --blackboard-name CN   the CN Blackboard's certificate must carry (default ${BLACKBOARD_NAME})
  --protocol MODE        default or seed (the seeds' steps 5-6: the session key goes back in
                         the clear, no sequence numbers; teaching only)
  --quiet                log warnings and errors only`;

interface SessionArgs {
  sid: string;
  blackboard: string;
  home: string | undefined;
  records: string;
  encrypt: boolean;
  protocol: string;
  "blackboard-name": string;
  quiet: boolean;
}

async function sessionSetup(values: Partial<SessionArgs>) {
  const sid = parseStudentId(required(values.sid, "sid"));
  const blackboard = parseHostPort(values.blackboard!, BLACKBOARD_PORT, "blackboard");
  const protocol = parseProtocolMode(values.protocol);
  if (protocol === "seed" && values.encrypt) {
    throw new UsageError("--encrypt does not apply to the seed protocol");
  }
  const records = recordKindOf(values.records ?? "aes-gcm");
  if (records === undefined) {
    throw new UsageError(`--records must be ${RECORD_KINDS.join(" or ")}, got '${values.records}'`);
  }
  if (protocol === "seed" && records !== "aes-gcm") {
    throw new UsageError("--records does not apply to the seed protocol");
  }
  if (values.encrypt) {
    if (records !== "aes-gcm") throw new UsageError("--encrypt and --records hmac disagree");
    console.error(
      "student: --encrypt is deprecated and does nothing: AES-GCM records are the default",
    );
  }
  const identity = await loadIdentity(values.home ?? defaultHome(sid));
  if (identity.sid !== sid) {
    throw new Error(`The certificate in ${identity.home} is for ${identity.sid}, not ${sid}`);
  }
  const log = new StepLog(`student ${sid}`, { quiet: values.quiet ?? false });
  const options = {
    blackboard,
    identity,
    log,
    records,
    blackboardName: values["blackboard-name"] ?? BLACKBOARD_NAME,
  };
  return { sid, protocol, log, options };
}

async function sendCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "student send",
    usage: `Usage: deno task student send --sid SID --message TEXT [--message TEXT]... [options]

STEP 3: sends "SID:<id> requests to upload report !" with cert 2 and an ephemeral X25519 share.
STEP 4: checks Blackboard's certificate against its stapled CRL, and its signature over the
exchange; the session key comes from X25519 (never on the wire). STEP 5: signs the exchange with
cert 2's key and proves the session key with a MAC. STEP 6: sends each message in an AES-GCM record
(sequence numbered); Blackboard prints it.

Options:
  --message TEXT         a message (repeatable, at most 4096 bytes each)
${SESSION_USAGE}`,
    options: { ...sessionOptions, message: { type: "string", multiple: true, default: [] } },
  });
  if (!parsed) return;
  const { values } = parsed;
  if (values.message.length === 0) throw new UsageError("missing required option --message");
  for (const m of values.message) {
    if (new TextEncoder().encode(m).length > 4096) {
      throw new UsageError("--message is longer than 4096 bytes");
    }
  }
  const { sid, protocol, log, options } = await sessionSetup(values);
  if (protocol === "seed") {
    log.warn("SEED PROTOCOL: the session key will cross the wire in the clear (teaching only)");
    using session = await openSeedSession(options);
    for (const m of values.message) await session.send(m);
  } else {
    using session = await openSession(options);
    for (const m of values.message) await session.send(m);
  }
  console.log(`SID: ${sid} sent ${values.message.length} message(s) to Blackboard.`);
}

async function uploadCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "student upload",
    usage: `Usage: deno task student upload --sid SID --file PATH [options]

Steps 3-5 as for 'send', then STEP 6: streams the file in authenticated chunks of 256 KiB with a
progress bar, ends with the file's SHA-256 and prints Blackboard's receipt. If the upload is cut,
run the same command again: it resumes from the offset Blackboard acknowledges.

Options:
  --file PATH            the report to upload (any size)
${SESSION_USAGE}`,
    options: { ...sessionOptions, file: { type: "string" } },
  });
  if (!parsed) return;
  const { values } = parsed;
  const file = required(values.file, "file");
  const { protocol, log, options } = await sessionSetup(values);
  if (protocol === "seed") {
    throw new UsageError("the seeds had no uploads: 'upload' needs the default protocol");
  }
  const info = await Deno.stat(file).catch((err) => {
    throw new Error(`Cannot read ${file}: ${err.message}`);
  });
  if (!info.isFile) throw new Error(`Cannot upload ${file}: not a regular file`);
  using session = await openSession(options);
  const bar = values.quiet ? undefined : new ProgressBar({ label: "upload" });
  const receipt = await session.upload(file, {
    onProgress: (sent, total) => bar?.update(sent, total),
  }).catch((err) => {
    // The error goes on a line of its own, under the bar.
    bar?.interrupt();
    throw err;
  });
  log.info(
    receipt.resumedFrom > 0 ? `resumed from byte ${receipt.resumedFrom}` : "uploaded in one go",
  );
  console.log(
    `Receipt: stored as ${receipt.stored}, ${receipt.size} bytes, SHA-256 ${receipt.sha256}`,
  );
}

async function fingerprintCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "student fingerprint",
    usage: `Usage: deno task student fingerprint [--ca-cert FILE]

Before enrolling: prints the SHA-256 fingerprint of the root certificate you were handed (cuhk.cer,
by USB stick, the course page or mail), to compare with the one the CA printed ('ca init' and 'ca
serve' print it; the instructor shows it, e.g. on the board). Trust the file only if they match:
the file itself travels over channels anybody could change, the fingerprint over one they cannot.

Options:
  --ca-cert FILE       the root certificate (default ${DEFAULT_CA_CERT})`,
    options: { "ca-cert": { type: "string", default: DEFAULT_CA_CERT } },
  });
  if (!parsed) return;
  const path = parsed.values["ca-cert"];
  const root = await loadRoot(path);
  console.log(`${path}\nSHA-256 fingerprint ${await certificateFingerprint(root)}`);
}

export async function main(args: string[]): Promise<number | void> {
  startOpenSslRsa(); // then --allow-ffi is gone (lib/crypto/openssl_rsa.ts)
  return await dispatch(
    "student",
    USAGE,
    {
      fingerprint: fingerprintCommand,
      enroll: enrollCommand,
      send: sendCommand,
      upload: uploadCommand,
    },
    args,
  );
}

if (import.meta.main) await runMain("student", main);
