#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * The student (system 1): enrolment with the CA (steps 1–2).
 *
 *     deno task student enroll --sid SID --code CODE
 */

import { CA_PORT } from "../lib/ca_protocol.ts";
import {
  dispatch,
  parseCommand,
  parseHostPort,
  parseStudentId,
  required,
  runMain,
  UsageError,
} from "../lib/cli.ts";
import {
  homePaths,
  loadRoot,
  requestCertificate,
  storeCertificate,
  storeKey,
} from "../lib/enrol.ts";
import { toBytes } from "../lib/crypto.ts";
import { exists, readTextFile, writeFileAtomic } from "../lib/fsutil.ts";
import { StepLog } from "../lib/log.ts";
import {
  certificatePem,
  createCsr,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
  importSigningKey,
  parseCsr,
  publicKeyOf,
  RSA_SIGN,
} from "../lib/pki.ts";

const DEFAULT_CA_CERT = "data/ca/cuhk.cer";

export function defaultHome(sid: string): string {
  return `data/students/${sid}`;
}

const USAGE = `The student (system 1)

Usage: deno task student COMMAND [options]

Commands:
  enroll   make a key pair and CSR, enrol with the CA, store key and cert 2 (steps 1-2)

Run 'deno task student COMMAND --help' for a command's options.`;

async function enrollCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "student enroll",
    usage: `Usage: deno task student enroll --sid SID --code CODE [options]
       deno task student enroll --sid SID --code CODE --csr FILE --out FILE [options]

STEP 1: makes an RSA key pair (2048 bits) and a CSR with CN = SID and sends it to the CA with the
one-time enrolment code. STEP 2: checks cert 2 (signed by the trusted root, for SID, carrying this
key) and stores key (mode 0600), certificate and root in the home directory.
With --csr, enrols a CSR made elsewhere (e.g. by 'openssl req') and writes cert 2 to --out.

Options:
  --sid SID            the student ID: exactly 10 digits
  --code CODE          the enrolment code from the CA operator ('ca code')
  --ca HOST:PORT       the CA (default 127.0.0.1:${CA_PORT})
  --ca-cert FILE       the root to trust (default ${DEFAULT_CA_CERT})
  --home DIR           where key and certificates go (default data/students/SID)
  --csr FILE           enrol this CSR (PEM or DER) instead of making a key
  --out FILE           with --csr: where to write cert 2 (PEM)
  --quiet              log warnings and errors only`,
    options: {
      sid: { type: "string" },
      code: { type: "string", default: "" },
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
      code: values.code,
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
    code: values.code,
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

export async function main(args: string[]): Promise<number | void> {
  return await dispatch("student", USAGE, { enroll: enrollCommand }, args);
}

if (import.meta.main) await runMain("student", main);
