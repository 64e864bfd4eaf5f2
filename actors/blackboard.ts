#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * Blackboard (system 1, steps 3–6): verifies students' cert 2, agrees a session key with each
 * (ephemeral X25519), prints authenticated messages and stores uploaded reports.
 *
 *     deno task blackboard serve [options]
 */

import { describeRsa } from "../lib/crypto/mod.ts";
import {
  describeLimits,
  HANDSHAKE_LIMIT_OPTIONS,
  HANDSHAKE_LIMIT_USAGE,
  handshakeLimitOption,
  MAX_PER_ADDRESS_OPTION,
  MAX_PER_ADDRESS_USAGE,
  maxPerAddressOption,
} from "../lib/net/mod.ts";
import {
  BLACKBOARD_NAME,
  BLACKBOARD_PORT,
  type BlackboardMode,
  DEFAULT_MAX_PARTIALS,
  DEFAULT_MAX_REPORT_SIZE,
  DEFAULT_PARTIAL_EXPIRY_MS,
  RECORD_KINDS,
  recordKindOf,
  serveBlackboard,
  sweepPartials,
  UploadStore,
} from "../lib/blackboard/mod.ts";
import { CA_PORT, fetchCrl, loadRoot } from "../lib/ca/mod.ts";
import {
  commonName,
  DEFAULT_CRL_REFRESH_MS,
  importSigningKey,
  parseCertificate,
  publicKeyOf,
  RevocationChecker,
  samePublicKey,
  verifyCertificate,
} from "../lib/pki/mod.ts";
import {
  assertPrivateFile,
  dispatch,
  ensureDir,
  lockDataDir,
  parseCommand,
  parseHostPort,
  parsePort,
  parsePositiveInt,
  parseProtocolMode,
  readTextFile,
  runMain,
  shutdownSignal,
  startOpenSslRsa,
  StepLog,
  UsageError,
} from "../lib/runtime/mod.ts";

const DEFAULT_DATA_DIR = "data/blackboard";
/** Largest --max-report, in MiB (1 TiB). */
const MAX_REPORT_MIB = 1024 ** 2;

const USAGE = `Blackboard (system 1, steps 3-6)

Usage: deno task blackboard COMMAND [options]

Commands:
  serve    verify students' cert 2, agree session keys, print messages, store reports

Run 'deno task blackboard COMMAND --help' for a command's options.`;

async function serveCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "blackboard serve",
    usage: `Usage: deno task blackboard serve [options]

Listens for students. STEP 3: verifies the request and cert 2 (chain to the pinned root, validity,
key usage, clientAuth, CN = the request's ID, not revoked by the CA's current CRL). STEP 4: sends
an ephemeral X25519 share with Blackboard's certificate and the CA's current CRL (stapled, so that
the student checks Blackboard's certificate too), signed with Blackboard's own key; the session key
comes from X25519 and HKDF and never crosses the wire (forward secrecy). STEP 5: checks the
student's signature with cert 2's key and its key confirmation (a MAC). STEP 6: prints each message
whose AES-GCM tag (or HMAC) and sequence number are valid, and stores uploaded reports in
DATA-DIR/reports/<id>/ once their SHA-256 matches.

Blackboard's certificate comes from the CA:
  deno task ca issue --server ${BLACKBOARD_NAME} --ip 127.0.0.1 --out ${DEFAULT_DATA_DIR}

Options:
  --host HOST          address to listen on (default 127.0.0.1)
  --port PORT          TCP port (default ${BLACKBOARD_PORT}; 0 picks a free one)
  --data-dir DIR       reports and partial uploads (default ${DEFAULT_DATA_DIR})
  --ca-cert FILE       the pinned root (default data/ca/cuhk.cer)
  --ca HOST:PORT       the CA, for its CRL (default 127.0.0.1:${CA_PORT})
  --cert FILE          Blackboard's certificate (default DATA-DIR/${BLACKBOARD_NAME}.cer)
  --key FILE           Blackboard's private key, mode 0600 (default DATA-DIR/${BLACKBOARD_NAME}.key)
  --crl-refresh SECS   fetch the CRL again when older than this (default ${
      DEFAULT_CRL_REFRESH_MS / 1000
    }); when the CA is
                       unreachable the last CRL is used only until its nextUpdate
  --records KIND       aes-gcm (default: students must ask for AES-GCM records) or hmac (also
                       accept MAC-only records, readable on the wire; teaching only)
  --encrypt            deprecated, does nothing: AES-GCM records are the default
  --protocol MODE      default or seed (the seeds' steps 5-6: key echoed in the clear, no
                       sequence numbers; teaching only)
  --max-report MIB     largest report accepted, in MiB (default ${
      DEFAULT_MAX_REPORT_SIZE / 1024 ** 2
    })
  --partial-quota MIB  bytes one student may hold in unfinished uploads, in MiB (default: the
                       largest report; at least that)
  --max-partials N     unfinished uploads one student may hold (default ${DEFAULT_MAX_PARTIALS})
  --partial-expiry H   remove an unfinished upload untouched for H hours, and a finished
                       upload's receipt (kept for a retry whose receipt was lost) that old
                       (default ${
      DEFAULT_PARTIAL_EXPIRY_MS / 3600_000
    }); swept at start-up and hourly
${MAX_PER_ADDRESS_USAGE}
${HANDSHAKE_LIMIT_USAGE}
  --quiet              log warnings and errors only`,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(BLACKBOARD_PORT) },
      ...MAX_PER_ADDRESS_OPTION,
      ...HANDSHAKE_LIMIT_OPTIONS,
      "data-dir": { type: "string", default: DEFAULT_DATA_DIR },
      "ca-cert": { type: "string", default: "data/ca/cuhk.cer" },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      cert: { type: "string" },
      key: { type: "string" },
      "crl-refresh": { type: "string", default: String(DEFAULT_CRL_REFRESH_MS / 1000) },
      records: { type: "string", default: "aes-gcm" },
      encrypt: { type: "boolean", default: false },
      protocol: { type: "string", default: "default" },
      "max-report": { type: "string", default: String(DEFAULT_MAX_REPORT_SIZE / 1024 ** 2) },
      "partial-quota": { type: "string" },
      "max-partials": { type: "string", default: String(DEFAULT_MAX_PARTIALS) },
      "partial-expiry": { type: "string", default: String(DEFAULT_PARTIAL_EXPIRY_MS / 3600_000) },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const port = parsePort(values.port);
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  const protocol = parseProtocolMode(values.protocol);
  if (protocol === "seed" && values.encrypt) {
    throw new UsageError("--encrypt does not apply to the seed protocol");
  }
  const records = recordKindOf(values.records);
  if (records === undefined) {
    throw new UsageError(
      `--records must be ${RECORD_KINDS.join(" or ")}, got '${values.records}'`,
    );
  }
  if (protocol === "seed" && records !== "aes-gcm") {
    throw new UsageError("--records does not apply to the seed protocol");
  }
  if (values.encrypt) {
    if (records !== "aes-gcm") throw new UsageError("--encrypt and --records hmac disagree");
    console.error(
      "blackboard serve: --encrypt is deprecated and does nothing: AES-GCM records are the default",
    );
  }
  const refreshMs = parsePositiveInt(values["crl-refresh"], "crl-refresh") * 1000;
  const maxSize = parsePositiveInt(values["max-report"], "max-report", MAX_REPORT_MIB) * 1024 ** 2;
  const partialQuota = values["partial-quota"] === undefined
    ? maxSize
    : parsePositiveInt(values["partial-quota"], "partial-quota", MAX_REPORT_MIB * 1024) * 1024 ** 2;
  if (partialQuota < maxSize) {
    throw new UsageError(
      `--partial-quota (${partialQuota / 1024 ** 2} MiB) must be at least --max-report (${
        maxSize / 1024 ** 2
      } MiB)`,
    );
  }
  const handshakeLimit = handshakeLimitOption(values);
  const maxPartials = parsePositiveInt(values["max-partials"], "max-partials", 10_000);
  const partialExpiryMs = parsePositiveInt(values["partial-expiry"], "partial-expiry", 24 * 365) *
    3600_000;
  const dataDir = values["data-dir"];
  const certPath = values.cert ?? `${dataDir}/${BLACKBOARD_NAME}.cer`;
  const keyPath = values.key ?? `${dataDir}/${BLACKBOARD_NAME}.key`;

  const log = new StepLog("Blackboard", { quiet: values.quiet });
  log.info(describeRsa());
  const root = await loadRoot(values["ca-cert"]);
  const cert = parseCertificate(await readTextFile(certPath, "Blackboard's certificate"), certPath);
  await assertPrivateFile(keyPath).catch((err) => {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot read Blackboard's key: ${keyPath} does not exist (deno task ca issue --server ${BLACKBOARD_NAME} --ip 127.0.0.1 --out ${dataDir})`,
      );
    }
    throw err;
  });
  const keyPem = await readTextFile(keyPath, "Blackboard's private key");
  if (!samePublicKey(cert, await publicKeyOf(keyPem))) {
    throw new Error(`${keyPath} is not the key of ${certPath}`);
  }
  // Refuse to start with a certificate students would refuse.
  await verifyCertificate(cert, {
    root,
    purpose: "serverAuth",
    expectedCommonName: commonName(cert) ?? "",
  });
  if (commonName(cert) !== BLACKBOARD_NAME) {
    log.warn(
      `the certificate's CN is '${
        commonName(cert)
      }': students expect '${BLACKBOARD_NAME}' unless given --blackboard-name`,
    );
  }
  await ensureDir(dataDir, 0o700);
  // One Blackboard per data directory: two would write the same partial uploads.
  using _lock = await lockDataDir(dataDir, "Blackboard");
  const mode: BlackboardMode = protocol;
  if (mode === "seed") {
    log.warn(
      "SEED PROTOCOL: students send the session key back IN THE CLEAR and messages carry no sequence number; anyone on the path can read the key, forge and replay messages. Teaching only.",
    );
  }
  if (records === "hmac") {
    log.warn(
      "--records hmac: students may ask for MAC-only records; their messages and reports cross the wire readable. Teaching only.",
    );
  }
  const store = new UploadStore(dataDir, { maxSize, partialQuota, maxPartials, partialExpiryMs });
  const signal = shutdownSignal();
  await sweepPartials(store, log, signal);
  const server = serveBlackboard({
    root,
    cert,
    signingKey: await importSigningKey(keyPem),
    revocation: new RevocationChecker({
      fetch: (timeoutMs) => fetchCrl(ca, root, timeoutMs),
      source: `the CA at ${ca.hostname}:${ca.port}`,
      root,
      log,
      refreshMs,
    }),
    store,
    log,
    protocol: mode,
    records,
    hostname: values.host,
    port,
    ...maxPerAddressOption(values["max-per-address"]),
    handshakeLimit,
    signal,
  });
  log.info(describeLimits(server.limits));
  log.info(
    `at most ${handshakeLimit.rate} handshakes a second per address, in bursts of ${handshakeLimit.burst}`,
  );
  log.info(
    `listening on ${values.host}:${server.port} (${mode} protocol${
      mode === "seed"
        ? ""
        : records === "hmac"
        ? ", AES-GCM or MAC-only records"
        : ", AES-GCM records"
    }); root ${values["ca-cert"]}, CRL from ${ca.hostname}:${ca.port} every ${
      refreshMs / 1000
    } s; reports in ${dataDir}/reports`,
  );
  await server.finished;
  log.info("stopped");
}

export async function main(args: string[]): Promise<number | void> {
  startOpenSslRsa(); // then --allow-ffi is gone (lib/crypto/openssl_rsa.ts)
  return await dispatch("blackboard", USAGE, { serve: serveCommand }, args);
}

if (import.meta.main) await runMain("blackboard", main);
