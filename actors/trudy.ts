#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write --allow-run=tshark
/**
 * Trudy, the attacker: each flaw of the seeds shown by an attack that works against seed mode
 * and fails against the default.
 *
 *     deno task trudy ATTACK [options]
 */

import { BANK_NAME, BANK_PORT, type BankMode, parseAmount } from "../lib/bank/mod.ts";
import { BLACKBOARD_NAME, BLACKBOARD_PORT } from "../lib/blackboard/mod.ts";
import { CA_PORT, fetchCrl, loadIdentity, loadRoot } from "../lib/ca/mod.ts";
import { parseCertificate, RevocationChecker } from "../lib/pki/mod.ts";
import {
  dispatch,
  parseCommand,
  parseHostPort,
  parsePort,
  parsePositiveInt,
  parseProtocolMode,
  parseStudentId,
  readTextFile,
  required,
  runMain,
  shutdownSignal,
  StepLog,
  UsageError,
} from "../lib/runtime/mod.ts";
import {
  type AttackServer,
  enrolImpersonation,
  FORGED_MESSAGE,
  FORGED_REFUSALS,
  reasonLine,
  recordBobProof,
  RETRY_WAIT_MS,
  ROLLBACK_MESSAGE,
  SETTLE_MS,
  sniffCapture,
  startBankMitm,
  startCrlRollback,
  startCrossService,
  startEnrolCodeTheft,
  startErrorInjection,
  startFakeBob,
  startMessageReplay,
  startSessionKeySniff,
  type Verdict,
  verdictLine,
  verdictStatus,
} from "../lib/trudy/mod.ts";

const USAGE = `Trudy, the attacker (for the lab's own servers on loopback only)

Usage: deno task trudy ATTACK [options]

Attacks:
  bank-mitm             on the path between Alice and Bob: substitute Trudy's key, read and change
                        Alice's operations (seed mode), refused at STEP 2 (default)
  bank-replay           record Bob's proof, replay it to impersonate Bob (seed mode), refused at
                        STEP 4 (default: Alice's nonce)
  session-key-sniff     read the session key the seeds' student sends back in the clear and forge
                        a message | HMAC, on the path or from a capture (--pcap)
  message-replay        send a step-6 message to Blackboard a second time (accepted in seed mode,
                        refused by sequence number in the default)
  enrol-impersonation   get a certificate for someone else's student ID
  enrol-code-theft      on the path between a student and the CA: swap Trudy's CSR into the
                        student's request (signed with open enrolment; refused by the default
                        CA, whose code never crosses the wire and binds the student's own CSR)
  cross-service         play Bob with another service's stolen key and certificate (Blackboard's):
                        accepted in seed mode, refused at STEP 2 (default: it does not name bank)
  crl-rollback          on the path between Blackboard and the CA: replay the CA's CRL from before
                        a revocation so that a revoked cert 2 gets in again (refused by the
                        default checker, which keeps the newer CRL; the seeds had no CRL at all)
  error-injection       on the path to Bob or Blackboard: replace the server's first reply after
                        the handshake with a cleartext error (believed in seed mode; the default
                        treats it as a broken connection and Alice resends the same request)

Each attack prints what Trudy saw and did as STEP lines (standard error) and ends with a verdict
line, 'ATTACK SUCCEEDED: …' (exit status 0) or 'ATTACK FAILED: <why>' (exit status 3), followed by
its reason as a stable code on a line of its own, e.g. '[reason: code-required]' (standard output).
Run 'deno task trudy ATTACK --help' for an attack's options.`;

async function enrolImpersonationCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy enrol-impersonation",
    usage: `Usage: deno task trudy enrol-impersonation --victim SID [options]

Trudy makes her own key and a CSR with the victim's ID and asks the CA to sign it without the
victim's enrolment code. Succeeds against 'ca serve --protocol seed' (the seeds' open enrolment);
fails against the default CA, which wants the victim's one-time code.

Options:
  --victim SID         the student ID to steal (10 digits)
  --ca HOST:PORT       the CA (default 127.0.0.1:${CA_PORT})
  --ca-cert FILE       the root everyone trusts (default data/ca/cuhk.cer)`,
    options: {
      victim: { type: "string" },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      "ca-cert": { type: "string", default: "data/ca/cuhk.cer" },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const victim = parseStudentId(required(values.victim, "victim"), "victim");
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  const root = await loadRoot(values["ca-cert"]);
  const log = new StepLog("Trudy");
  const verdict = await enrolImpersonation({ ca, root, victim, log });
  printVerdict(verdict);
  return verdictStatus(verdict);
}

/** The verdict line and, on the next line, its reason code. */
function printVerdict(verdict: Verdict): void {
  console.log(`${verdictLine(verdict)}\n${reasonLine(verdict)}`);
}

/** How long Trudy waits for a (next) victim unless told otherwise. */
const DEFAULT_VICTIM_TIMEOUT_S = 120;

/** Options every on-the-path attack takes. */
const LISTEN_OPTIONS = {
  listen: { type: "string", default: "127.0.0.1" },
  "listen-port": { type: "string", default: "0" },
  once: { type: "boolean", default: false },
  timeout: { type: "string", default: String(DEFAULT_VICTIM_TIMEOUT_S) },
} as const;

const LISTEN_USAGE =
  `  --listen HOST        the address to listen on (default 127.0.0.1; 0.0.0.0 on a router, where
                       nft redirects victims' forwarded connections to her)
  --listen-port PORT   where victims connect (default 0: a free port; the 'Trudy listening on'
                       line says which)
  --once               stop after the first victim connection (exit status from its verdict)
  --timeout SECS       stop when no victim has connected for this long (default ${DEFAULT_VICTIM_TIMEOUT_S}; 0: wait
                       forever, until Ctrl-C)`;

/** `--timeout`: seconds, 0 for none. */
function victimTimeoutMs(text: string): number {
  return text === "0" ? 0 : parsePositiveInt(text, "timeout", 86_400) * 1000;
}

/**
 * Prints where Trudy listens, then one verdict line per victim connection, until --once is
 * satisfied or SIGINT/SIGTERM. The exit status is the last verdict's (3 when there was none).
 */
async function runAttackServer(
  server: AttackServer,
  log: StepLog,
  options: { once: boolean; timeout: string; listen: string },
  signal: AbortSignal,
): Promise<number> {
  const { once } = options;
  const timeoutMs = victimTimeoutMs(options.timeout);
  const host = options.listen.includes(":") ? `[${options.listen}]` : options.listen;
  log.info(`Trudy listening on ${host}:${server.port}`);
  const stopped = new Promise<undefined>((resolve) => {
    if (signal.aborted) resolve(undefined);
    signal.addEventListener("abort", () => resolve(undefined), { once: true });
  });
  let last: Verdict | undefined;
  let timedOut = false;
  try {
    for (;;) {
      let timer: ReturnType<typeof setTimeout> | undefined;
      const waited = timeoutMs === 0 ? new Promise<never>(() => {}) : new Promise<"timeout">(
        (resolve) => (timer = setTimeout(() => resolve("timeout"), timeoutMs)),
      );
      const verdict = await Promise.race([server.nextVerdict(), stopped, waited]).finally(() =>
        clearTimeout(timer)
      );
      if (verdict === "timeout") {
        timedOut = true;
        log.warn(
          `no victim connected in ${
            timeoutMs / 1000
          } s: Trudy stops (--timeout SECS to wait longer, 0 to wait until Ctrl-C)`,
        );
        break;
      }
      if (verdict === undefined) break;
      printVerdict(verdict);
      last = verdict;
      if (once) break;
    }
  } finally {
    await server.close();
  }
  if (!last) {
    const none: Verdict = {
      succeeded: false,
      reason: "no-victim",
      detail: timedOut ? `no victim connected in ${timeoutMs / 1000} s` : "no victim connected",
    };
    printVerdict(none);
    return verdictStatus(none);
  }
  return verdictStatus(last);
}

function parseSettle(text: string): number {
  return parsePositiveInt(text, "settle-ms");
}

async function bankMitmCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy bank-mitm",
    usage: `Usage: deno task trudy bank-mitm [options]

Trudy relays between Alice and Bob; point Alice at Trudy's port. Seed mode: Trudy puts her own key
in 'Hi, I'm Bob', forges Bob's proof with it, reads Alice's secret, passes it on to Bob under his
real key, reads every operation, changes each deposit's amount and rewrites Bob's replies so that
Alice sees nothing wrong. Default mode: Trudy's certificate (her own CA) is refused by Alice at
STEP 2, and Alice says why.

Options:
  --bank HOST:PORT     the real Bob (default 127.0.0.1:${BANK_PORT})
  --amount AMOUNT      what each deposit becomes on its way to Bob (default 900.00)
${LISTEN_USAGE}`,
    options: {
      bank: { type: "string", default: `127.0.0.1:${BANK_PORT}` },
      amount: { type: "string", default: "900.00" },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const bank = parseHostPort(values.bank, BANK_PORT, "bank");
  const port = parsePort(values["listen-port"], "listen-port");
  try {
    parseAmount(values.amount);
  } catch (err) {
    throw new UsageError(`--amount: ${err instanceof Error ? err.message : String(err)}`);
  }
  const log = new StepLog("Trudy");
  log.info("making Trudy's RSA key and her own CA's certificate for Bob's name");
  const signal = shutdownSignal();
  const server = await startBankMitm({
    bank,
    log,
    port,
    hostname: values.listen,
    amount: values.amount,
    graceMs: 2000,
  });
  return await runAttackServer(server, log, values, signal);
}

/**
 * `--protocol default|seed` (`secure`, the old name of the default, still works for one release,
 * with a warning); absent: undefined (try both). lib/bank calls the default mode `secure`.
 */
function parseMode(text: string | undefined): BankMode | undefined {
  if (text === undefined) return undefined;
  const mode = parseProtocolMode(text, {
    deprecated: { secure: "default" },
    command: "trudy bank-replay",
  });
  return mode === "seed" ? "seed" : "secure";
}

async function bankReplayCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy bank-replay",
    usage: `Usage: deno task trudy bank-replay [options]

First Trudy connects to Bob as a client, says Hello and 'prove it', and records his 'Hi, I'm Bob'
and proof. Then she plays Bob on her own port with those frames; point Alice at it. Seed mode:
Alice accepts the replayed proof (a signature over a fixed sentence) and sends her secret to Trudy.
Default mode: the recorded proof does not cover Alice's fresh nonce; Alice refuses at STEP 4.

Options:
  --bank HOST:PORT     the real Bob to record from (default 127.0.0.1:${BANK_PORT})
  --protocol MODE      default or seed (default: try seed, then default); 'secure' is the
                       deprecated name of default
${LISTEN_USAGE}`,
    options: {
      bank: { type: "string", default: `127.0.0.1:${BANK_PORT}` },
      protocol: { type: "string" },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const bank = parseHostPort(values.bank, BANK_PORT, "bank");
  const port = parsePort(values["listen-port"], "listen-port");
  const mode = parseMode(values.protocol);
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  const recorded = await recordBobProof({ bank, log, ...(mode ? { mode } : {}) });
  log.info(
    `recorded Bob's ${recorded.mode === "seed" ? "seed" : "default"} handshake: now playing Bob`,
  );
  const server = startFakeBob({ recorded, log, port, hostname: values.listen, graceMs: 2000 });
  return await runAttackServer(server, log, values, signal);
}

async function sessionKeySniffCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy session-key-sniff",
    usage: `Usage: deno task trudy session-key-sniff [options]
       deno task trudy session-key-sniff --pcap FILE [--port PORT] [--message TEXT]

On the path (default): Trudy relays between a student and Blackboard; point the student at
Trudy's port. Seed mode: she reads the session key the student sends back in the clear at STEP 5
and injects a forged message | HMAC under it before the student says anything; the seeds'
Blackboard acknowledges nothing, so acceptance is judged from what Trudy can see (no refusal, the
connection stays open). Default mode: no key on the wire; a message forged under a guessed key is
refused.

Passive (--pcap): Trudy reads a capture with tshark, puts each TCP stream to Blackboard back
together, finds the session key sent in the clear, checks the captured messages' HMACs under it
and forges a message | HMAC. A default-mode capture holds no key.

Options:
  --blackboard HOST:PORT  the real Blackboard (default 127.0.0.1:${BLACKBOARD_PORT})
  --message TEXT          the forged message (default '${FORGED_MESSAGE}')
  --settle-ms MS          how long to wait for a refusal after the forgery (default ${SETTLE_MS})
  --pcap FILE             read a capture instead of relaying
  --port PORT             with --pcap: Blackboard's port in the capture (default: found, as
                          the side of each connection that receives a step-3 request)
${LISTEN_USAGE}`,
    options: {
      blackboard: { type: "string", default: `127.0.0.1:${BLACKBOARD_PORT}` },
      message: { type: "string", default: FORGED_MESSAGE },
      "settle-ms": { type: "string", default: String(SETTLE_MS) },
      pcap: { type: "string" },
      port: { type: "string" },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const log = new StepLog("Trudy");
  if (values.pcap !== undefined) {
    const verdict = await sniffCapture({
      pcap: values.pcap,
      ...(values.port !== undefined ? { port: parsePort(values.port, "port") } : {}),
      log,
      message: values.message,
    });
    printVerdict(verdict);
    return verdictStatus(verdict);
  }
  const blackboard = parseHostPort(values.blackboard, BLACKBOARD_PORT, "blackboard");
  const port = parsePort(values["listen-port"], "listen-port");
  const signal = shutdownSignal();
  const server = startSessionKeySniff({
    blackboard,
    log,
    port,
    hostname: values.listen,
    message: values.message,
    settleMs: parseSettle(values["settle-ms"]),
    graceMs: 2000,
  });
  return await runAttackServer(server, log, values, signal);
}

async function messageReplayCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy message-replay",
    usage: `Usage: deno task trudy message-replay [options]

Trudy relays between a student and Blackboard; point the student at Trudy's port. The first step-6
message of each session goes to Blackboard twice. Seed mode: no sequence number, the copy's HMAC is
valid and Blackboard prints the message twice (it acknowledges nothing, so Trudy judges acceptance
from the absence of a refusal). Default mode: Blackboard refuses the copy by its sequence number.

Options:
  --blackboard HOST:PORT  the real Blackboard (default 127.0.0.1:${BLACKBOARD_PORT})
  --settle-ms MS          how long to wait for a refusal after the copy (default ${SETTLE_MS})
${LISTEN_USAGE}`,
    options: {
      blackboard: { type: "string", default: `127.0.0.1:${BLACKBOARD_PORT}` },
      "settle-ms": { type: "string", default: String(SETTLE_MS) },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const blackboard = parseHostPort(values.blackboard, BLACKBOARD_PORT, "blackboard");
  const port = parsePort(values["listen-port"], "listen-port");
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  const server = startMessageReplay({
    blackboard,
    log,
    port,
    hostname: values.listen,
    settleMs: parseSettle(values["settle-ms"]),
    graceMs: 2000,
  });
  return await runAttackServer(server, log, values, signal);
}

async function enrolCodeTheftCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy enrol-code-theft",
    usage: `Usage: deno task trudy enrol-code-theft [options]

Trudy relays between a student and the CA; point the student's --ca at Trudy's port. She reads the
student's enrolment request and swaps in a CSR of her own for the same ID, keeping the rest. Seed
mode ('ca serve --protocol seed', open enrolment): the CA signs it, and Trudy holds cert 2 for the
victim's ID. Default: the request carries no code, only a binding of the code to the student's own
CSR; the CA refuses Trudy's CSR at STEP 2 and the victim's code stays unused.

Options:
  --ca HOST:PORT       the real CA (default 127.0.0.1:${CA_PORT})
${LISTEN_USAGE}`,
    options: {
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const upstream = parseHostPort(values.ca, CA_PORT, "ca");
  const port = parsePort(values["listen-port"], "listen-port");
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  const server = startEnrolCodeTheft({ upstream, log, port, hostname: values.listen });
  return await runAttackServer(server, log, values, signal);
}

async function crossServiceCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy cross-service",
    usage: `Usage: deno task trudy cross-service [options]

Trudy has taken another lab service's key and certificate (Blackboard's, from the Blackboard
host) and plays Bob with them, running Bob's own handshake; point Alice at Trudy's port. Every
lab server certificate comes from the same CA, carries serverAuth and may name 127.0.0.1: only
the service's name tells them apart. Seed mode: Bob's key is not authenticated, Alice takes
Blackboard's key as Bob's and Trudy reads her secret and operations. Default: Alice checks that
Bob's certificate names '${BANK_NAME}', whatever address she dialled, and refuses it at STEP 2.

Options:
  --protocol MODE      default or seed: the protocol Trudy's Bob speaks, Alice's (default
                       default)
  --cert FILE          the stolen certificate (default data/blackboard/${BLACKBOARD_NAME}.cer)
  --key FILE           its private key (default data/blackboard/${BLACKBOARD_NAME}.key)
  --ca-cert FILE       the lab's root, to check Alice's certificate (default data/ca/cuhk.cer)
  --ca HOST:PORT       the CA whose public CRL Trudy's Bob staples, as Bob does (default
                       127.0.0.1:${CA_PORT})
  --bank-name NAME     the name Alice expects, to explain her refusal (default ${BANK_NAME})
${LISTEN_USAGE}`,
    options: {
      protocol: { type: "string" },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      cert: { type: "string", default: `data/blackboard/${BLACKBOARD_NAME}.cer` },
      key: { type: "string", default: `data/blackboard/${BLACKBOARD_NAME}.key` },
      "ca-cert": { type: "string", default: "data/ca/cuhk.cer" },
      "bank-name": { type: "string", default: BANK_NAME },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const protocol = parseProtocolMode(values.protocol, { command: "trudy cross-service" });
  const mode: BankMode = protocol === "seed" ? "seed" : "secure";
  const port = parsePort(values["listen-port"], "listen-port");
  const cert = parseCertificate(
    await readTextFile(values.cert, "the stolen certificate"),
    `certificate ${values.cert}`,
  );
  const keyPem = await readTextFile(values.key, "the stolen key");
  const root = await loadRoot(values["ca-cert"]);
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  // A CRL is public: Trudy's Bob fetches the CA's, as the real Bob does, and staples it.
  const revocation = new RevocationChecker({
    fetch: (timeoutMs) => fetchCrl(ca, root, timeoutMs),
    source: `the CA at ${ca.hostname}:${ca.port}`,
    root,
    log,
  });
  const server = await startCrossService({
    cert,
    keyPem,
    root,
    mode,
    log,
    port,
    hostname: values.listen,
    revocation,
    bankName: values["bank-name"],
    graceMs: 2000,
  });
  return await runAttackServer(server, log, values, signal);
}

async function crlRollbackCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy crl-rollback",
    usage: `Usage: deno task trudy crl-rollback --home DIR [options]

Trudy relays Blackboard's CRL fetches to the CA: point Blackboard's --ca at Trudy's port. She holds
a student's cert 2 and key (stolen: the reason the CA revokes it; or she is that student), in DIR.
  R1  she logs in to Blackboard with it until a CRL passes on her path, and records that CRL (it
      does not list the certificate yet);
  R2  the CA revokes the certificate ('ca revoke'); she keeps logging in until Blackboard, holding
      the CA's newer CRL, refuses her;
  R3  she answers each of Blackboard's CRL fetches with the recorded CRL (signed by the root, not
      expired, only older) and logs in again.
A checker that takes any CRL the root signed lets her in. The default checker refuses a CRL whose
number or thisUpdate goes backwards and keeps the newer one: she stays refused. The seeds had no
revocation at all (a stolen cert 2 was never refused), so there is no seed-mode half.
Not claimed: Trudy on the path when the revocation is published can withhold the newer CRL, and
Blackboard keeps the older one until its nextUpdate (the CA's CRLs are valid for an hour), then
fails closed; only a CRL fetch bound to a fresh nonce would close that window.

Options:
  --home DIR              the stolen identity: student.key, student.cer, cuhk.cer
  --ca HOST:PORT          the real CA (default 127.0.0.1:${CA_PORT})
  --blackboard HOST:PORT  Blackboard, where Trudy logs in (default 127.0.0.1:${BLACKBOARD_PORT})
  --blackboard-name CN    the CN Blackboard's certificate must carry (default ${BLACKBOARD_NAME})
  --message TEXT          what Trudy sends once in (default '${ROLLBACK_MESSAGE}')
  --interval-ms MS        between login attempts (default 500)
  --wait SECS             how long each phase may take (default 120)
${LISTEN_USAGE}`,
    options: {
      home: { type: "string" },
      ca: { type: "string", default: `127.0.0.1:${CA_PORT}` },
      blackboard: { type: "string", default: `127.0.0.1:${BLACKBOARD_PORT}` },
      "blackboard-name": { type: "string", default: BLACKBOARD_NAME },
      message: { type: "string", default: ROLLBACK_MESSAGE },
      "interval-ms": { type: "string", default: "500" },
      wait: { type: "string", default: "120" },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const home = required(values.home, "home");
  const ca = parseHostPort(values.ca, CA_PORT, "ca");
  const blackboard = parseHostPort(values.blackboard, BLACKBOARD_PORT, "blackboard");
  const port = parsePort(values["listen-port"], "listen-port");
  const intervalMs = parsePositiveInt(values["interval-ms"], "interval-ms");
  const waitMs = parsePositiveInt(values.wait, "wait") * 1000;
  const identity = await loadIdentity(home);
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  const server = startCrlRollback({
    ca,
    blackboard,
    identity,
    blackboardName: values["blackboard-name"],
    log,
    port,
    hostname: values.listen,
    intervalMs,
    waitMs,
    message: values.message,
  });
  return await runAttackServer(server, log, values, signal);
}

async function errorInjectionCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "trudy error-injection",
    usage:
      `Usage: deno task trudy error-injection (--bank HOST:PORT | --blackboard HOST:PORT) [options]

Trudy relays between a client and Bob (or Blackboard); point the client at Trudy's port. She lets
the handshake through, then drops the server's first reply after it (a record she cannot read or
forge) and sends a cleartext 'error' frame of her own in its place, once per victim.
Seed mode (the bank): Alice takes it as Bob's refusal and ends the session, although Bob applied
her operation. Default: after the handshake only authenticated records count; the victim treats
the frame as a broken connection and says so inside the session, and Alice resends the same
request (same request id) on a new connection, which Trudy relays and Bob applies once. Seed
Blackboard acknowledges nothing after the handshake: there is no reply to replace.

Options:
  --bank HOST:PORT        the real Bob
  --blackboard HOST:PORT  or the real Blackboard
  --reason TEXT           what the forged error says (default '${FORGED_REFUSALS.bank}' to Alice,
                          '${FORGED_REFUSALS.blackboard}' to a student)
  --retry-wait-ms MS      the bank: how long to wait for Alice to come back after she left
                          (default ${RETRY_WAIT_MS})
${LISTEN_USAGE}`,
    options: {
      bank: { type: "string" },
      blackboard: { type: "string" },
      reason: { type: "string" },
      "retry-wait-ms": { type: "string", default: String(RETRY_WAIT_MS) },
      ...LISTEN_OPTIONS,
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  if ((values.bank === undefined) === (values.blackboard === undefined)) {
    throw new UsageError("give exactly one of --bank and --blackboard");
  }
  const target = values.bank !== undefined ? "bank" : "blackboard";
  const upstream = values.bank !== undefined
    ? parseHostPort(values.bank, BANK_PORT, "bank")
    : parseHostPort(values.blackboard!, BLACKBOARD_PORT, "blackboard");
  const port = parsePort(values["listen-port"], "listen-port");
  const log = new StepLog("Trudy");
  const signal = shutdownSignal();
  const server = startErrorInjection({
    upstream,
    target,
    log,
    port,
    hostname: values.listen,
    retryWaitMs: parsePositiveInt(values["retry-wait-ms"], "retry-wait-ms"),
    ...(values.reason !== undefined ? { reason: values.reason } : {}),
    graceMs: 2000,
  });
  return await runAttackServer(server, log, values, signal);
}

export async function main(args: string[]): Promise<number | void> {
  return await dispatch("trudy", USAGE, {
    "bank-mitm": bankMitmCommand,
    "bank-replay": bankReplayCommand,
    "session-key-sniff": sessionKeySniffCommand,
    "message-replay": messageReplayCommand,
    "enrol-impersonation": enrolImpersonationCommand,
    "enrol-code-theft": enrolCodeTheftCommand,
    "cross-service": crossServiceCommand,
    "crl-rollback": crlRollbackCommand,
    "error-injection": errorInjectionCommand,
  }, args);
}

if (import.meta.main) await runMain("trudy", main);
