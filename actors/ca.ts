#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * CUHK, the certificate authority (system 1, steps 0–2, and revocation).
 *
 *     deno task ca init | serve | code | issue | revoke | crl | list
 */

import { describeRsa } from "../lib/crypto/mod.ts";
import {
  CA_PORT,
  CertificateAuthority,
  DEFAULT_CODE_TTL_MS,
  serialOf,
  serveCa,
} from "../lib/ca/mod.ts";
import {
  describeLimits,
  MAX_PER_ADDRESS_OPTION,
  MAX_PER_ADDRESS_USAGE,
  maxPerAddressOption,
} from "../lib/net/mod.ts";
import { certificateFingerprint, certificatePem, crlNumber, crlPem, der } from "../lib/pki/mod.ts";
import {
  dispatch,
  ensureDir,
  lockDataDir,
  parseCommand,
  parsePort,
  parsePositiveInt,
  parseProtocolMode,
  parseStudentId,
  required,
  runMain,
  shutdownSignal,
  startOpenSslRsa,
  StepLog,
  UsageError,
  warnDeprecated,
  writeFileAtomic,
  writeSecretFile,
} from "../lib/runtime/mod.ts";

const DEFAULT_DATA_DIR = "data/ca";

const USAGE = `CUHK certificate authority (system 1, steps 0–2)

Usage: deno task ca COMMAND [options]

Commands:
  init     create the root (cuhk.cer, cuhk.key) and print its fingerprint, then exit
  serve    run the CA on TCP ${CA_PORT}: enrolments and the current CRL (creates the root once)
  code     print a one-time enrolment code for a student ID
  issue    issue a server key and certificate (Blackboard, the bank, the chat)
  revoke   revoke certificates by serial or by student ID
  crl      write the current CRL to a file
  list     print the ledger of every certificate issued

Run 'deno task ca COMMAND --help' for a command's options.`;

const dataDirOption = { "data-dir": { type: "string", default: DEFAULT_DATA_DIR } } as const;

/** Longest validity of an enrolment code, in days. */
const MAX_CODE_DAYS = 365;
/** Longest validity of a server certificate, in days (the CA also never outlives its root). */
const MAX_SERVER_DAYS = 825;

/**
 * Opens the CA of `dataDir`. Only `serve` and `init` may create a root there; every other command
 * refuses a directory with no CA, so a mistyped --data-dir never makes a second CA.
 */
async function openCa(
  dataDir: string,
  options: { log?: StepLog; create?: boolean } = {},
): Promise<CertificateAuthority> {
  return await CertificateAuthority.open(dataDir, {
    create: options.create ?? false,
    ...(options.log ? { log: options.log } : {}),
  });
}

async function initCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca init",
    usage: `Usage: deno task ca init [options]

STEP 0 alone: creates the root (cuhk.cer, cuhk.key mode 0600) in the data directory, or reuses the
one there, and prints the root's SHA-256 fingerprint, for students to compare out of band.

Options:
  --data-dir DIR       (default ${DEFAULT_DATA_DIR})`,
    options: { ...dataDirOption },
  });
  if (!parsed) return;
  const dir = parsed.values["data-dir"];
  using _lock = await lockDataDir(dir, "CA");
  using ca = await openCa(dir, { log: new StepLog("CUHK"), create: true });
  console.log(`${ca.rootPath}\nSHA-256 fingerprint ${await certificateFingerprint(ca.root)}`);
}

async function serveCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca serve",
    usage: `Usage: deno task ca serve [options]

Creates the root (cuhk.cer, cuhk.key mode 0600) in the data directory the first time and reuses
it after; serves enrolments (STEP 1 CSR -> STEP 2 cert 2) and the CRL until SIGINT.

Options:
  --host HOST          address to listen on (default 127.0.0.1)
  --port PORT          TCP port (default ${CA_PORT}; 0 picks a free one)
  --data-dir DIR       root, key and ledger (default ${DEFAULT_DATA_DIR})
  --protocol MODE      default (enrolment needs the ID's one-time code from 'ca code') or seed
                       (open enrolment, the seeds' behaviour: any ID without a code; teaching
                       only); --open-enrolment is the deprecated name of --protocol seed
${MAX_PER_ADDRESS_USAGE}
  --quiet              log warnings and errors only`,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(CA_PORT) },
      protocol: { type: "string" },
      "open-enrolment": { type: "boolean", default: false },
      ...MAX_PER_ADDRESS_OPTION,
      quiet: { type: "boolean", default: false },
      ...dataDirOption,
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  let protocol = parseProtocolMode(values.protocol);
  if (values["open-enrolment"]) {
    if (values.protocol !== undefined && protocol !== "seed") {
      throw new UsageError(
        "--open-enrolment means --protocol seed: it cannot go with --protocol default",
      );
    }
    warnDeprecated("--open-enrolment", { command: "ca serve" });
    protocol = "seed";
  }
  const openEnrolment = protocol === "seed";
  const log = new StepLog("CUHK", { quiet: values.quiet });
  log.info(describeRsa());
  const port = parsePort(values.port);
  // One CA per data directory: a second 'serve' (or 'init') is refused before any root is made.
  using _lock = await lockDataDir(values["data-dir"], "CA");
  using ca = await openCa(values["data-dir"], { log, create: true });
  log.info(`root fingerprint (SHA-256) ${await certificateFingerprint(ca.root)}`);
  if (openEnrolment) {
    log.warn(
      "--protocol seed (open enrolment): anyone can get a certificate for any student ID (the seeds' flaw)",
    );
  }
  const server = serveCa({
    ca,
    log,
    hostname: values.host,
    port,
    openEnrolment,
    signal: shutdownSignal(),
    ...maxPerAddressOption(values["max-per-address"]),
  });
  log.info(describeLimits(server.limits));
  log.info(
    `listening on ${values.host}:${server.port} (${protocol} protocol${
      openEnrolment ? ": open enrolment" : ""
    }); root ${ca.rootPath}`,
  );
  await server.finished;
  log.info("stopped");
}

async function codeCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca code",
    usage: `Usage: deno task ca code --sid SID [options]

Prints a one-time enrolment code for SID, alone on standard output. The code works once, for that
ID only, until it expires. Only its hash is stored.

Options:
  --sid SID            the student ID (10 digits)
  --days N             days until the code expires (default ${
      DEFAULT_CODE_TTL_MS / 86_400_000
    }, at most ${MAX_CODE_DAYS})
  --data-dir DIR       (default ${DEFAULT_DATA_DIR})`,
    options: { sid: { type: "string" }, days: { type: "string" }, ...dataDirOption },
  });
  if (!parsed) return;
  const { values } = parsed;
  const sid = parseStudentId(required(values.sid, "sid"));
  const ttl = values.days === undefined
    ? DEFAULT_CODE_TTL_MS
    : parsePositiveInt(values.days, "days", MAX_CODE_DAYS) * 86_400_000;
  using ca = await openCa(values["data-dir"]);
  const { code, expiresAt } = ca.createCode(sid, ttl);
  console.log(code);
  console.error(`Enrolment code for ${sid}, single use, expires ${expiresAt.toISOString()}`);
}

const IPV4 = /^(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)(\.(25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)){3}$/;
const DNS_NAME =
  /^(?=.{1,253}$)[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?(\.[a-zA-Z0-9]([a-zA-Z0-9-]{0,61}[a-zA-Z0-9])?)*$/;

async function issueCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca issue",
    usage:
      `Usage: deno task ca issue --server NAME [--ip ADDR]... [--dns NAME]... --out DIR [options]

Issues a server key (RSA 2048) and certificate (serverAuth; SAN with NAME, each --dns and each
--ip) and writes DIR/NAME.key (mode 0600), DIR/NAME.cer and DIR/cuhk.cer. For example:
  deno task ca issue --server chat --dns localhost --ip 127.0.0.1 --out data/chat

Options:
  --server NAME        the service's name, also its CN: blackboard, bank or chat (clients check
                       this name, whatever address they dial)
  --ip ADDR            an IP address for the SAN (repeatable)
  --dns NAME           another DNS name for the SAN (repeatable)
  --out DIR            where to write the files
  --days N             validity in days (default 365, at most ${MAX_SERVER_DAYS}, never beyond
                       the root)
  --data-dir DIR       (default ${DEFAULT_DATA_DIR})`,
    options: {
      server: { type: "string" },
      ip: { type: "string", multiple: true, default: [] },
      dns: { type: "string", multiple: true, default: [] },
      out: { type: "string" },
      days: { type: "string" },
      ...dataDirOption,
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const name = required(values.server, "server");
  const out = required(values.out, "out");
  for (const n of [name, ...values.dns]) {
    if (!DNS_NAME.test(n)) throw new UsageError(`'${n}' is not a DNS name`);
  }
  for (const ip of values.ip) {
    if (!IPV4.test(ip) && !/^[0-9a-fA-F:]+$/.test(ip)) {
      throw new UsageError(`'${ip}' is not an IP address`);
    }
  }
  const validityDays = values.days === undefined
    ? 365
    : parsePositiveInt(values.days, "days", MAX_SERVER_DAYS);
  using ca = await openCa(values["data-dir"]);
  const { cert, keyPem } = await ca.issueServer({
    name,
    dnsNames: values.dns,
    ipAddresses: values.ip,
    validityDays,
  });
  await ensureDir(out, 0o755);
  await writeSecretFile(`${out}/${name}.key`, keyPem);
  await writeFileAtomic(`${out}/${name}.cer`, certificatePem(cert));
  await writeFileAtomic(`${out}/cuhk.cer`, ca.rootPem);
  console.log(`${out}/${name}.cer`);
  console.error(
    `Issued ${cert.subject} (serial ${
      serialOf(cert)
    }, until ${cert.notAfter.toISOString()}); key ${out}/${name}.key`,
  );
}

async function revokeCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "ca revoke",
    usage: `Usage: deno task ca revoke (--serial HEX | --sid SID) [options]

Revokes a certificate by serial, or every valid certificate of a student ID. The next CRL (served
on the CA's port and written by 'ca crl') lists them.

Options:
  --serial HEX         a certificate serial (hex, as 'ca list' shows it)
  --sid SID            a student ID: revokes all its valid certificates
  --data-dir DIR       (default ${DEFAULT_DATA_DIR})`,
    options: { serial: { type: "string" }, sid: { type: "string" }, ...dataDirOption },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  if ((values.serial === undefined) === (values.sid === undefined)) {
    throw new UsageError("give exactly one of --serial and --sid");
  }
  using ca = await openCa(values["data-dir"]);
  let revoked: string[];
  if (values.serial !== undefined) {
    const serial = values.serial.replace(/:/g, "").toLowerCase();
    if (!/^[0-9a-f]{1,40}$/.test(serial)) {
      throw new UsageError(`--serial must be hex, got '${values.serial}'`);
    }
    if (!ca.hasSerial(serial)) {
      throw new Error(`No certificate with serial ${serial} in the ledger`);
    }
    revoked = ca.revoke({ serial });
  } else {
    revoked = ca.revoke({ sid: parseStudentId(values.sid!) });
  }
  for (const s of revoked) console.log(s);
  if (revoked.length === 0) {
    console.error("Nothing to revoke: no valid certificate matches");
    return 1;
  }
  console.error(`Revoked ${revoked.length} certificate(s)`);
  return 0;
}

async function crlCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca crl",
    usage: `Usage: deno task ca crl [--out FILE] [options]

Writes the current CRL (v2, with a CRL number), signed by the root, as PEM ('X509 CRL', which
'openssl crl' and 'openssl verify -crl_check' read) or DER.

Options:
  --out FILE           where to write it (default DATA-DIR/crl.pem, or crl.der with --der)
  --der                DER instead of PEM
  --data-dir DIR       (default ${DEFAULT_DATA_DIR})`,
    options: {
      out: { type: "string" },
      der: { type: "boolean", default: false },
      ...dataDirOption,
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const out = values.out ?? `${values["data-dir"]}/crl.${values.der ? "der" : "pem"}`;
  using ca = await openCa(values["data-dir"]);
  const crl = await ca.crl();
  await writeFileAtomic(out, values.der ? der(crl) : crlPem(crl));
  console.error(
    `CRL number ${
      crlNumber(crl)
    } with ${crl.entries.length} revoked, valid until ${crl.nextUpdate?.toISOString()}, written to ${out}`,
  );
}

async function listCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "ca list",
    usage: `Usage: deno task ca list [--json] [--data-dir DIR]

Prints the ledger: every certificate issued, with serial, subject, validity and status.`,
    options: { json: { type: "boolean", default: false }, ...dataDirOption },
  });
  if (!parsed) return;
  using ca = await openCa(parsed.values["data-dir"]);
  const rows = ca.ledger();
  if (parsed.values.json) {
    console.log(JSON.stringify(rows, null, 2));
    return;
  }
  console.log(["serial", "kind", "subject", "not after", "status"].join("\t"));
  for (const r of rows) console.log([r.serial, r.kind, r.subject, r.notAfter, r.status].join("\t"));
}

export async function main(args: string[]): Promise<number | void> {
  startOpenSslRsa(); // then --allow-ffi is gone (lib/crypto/openssl_rsa.ts)
  return await dispatch("ca", USAGE, {
    init: initCommand,
    serve: serveCommand,
    code: codeCommand,
    issue: issueCommand,
    revoke: revokeCommand,
    crl: crlCommand,
    list: listCommand,
  }, args);
}

if (import.meta.main) await runMain("ca", main);
