#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-write
/**
 * The bank (system 2, seed 001): Bob the server and Alice the customer.
 *
 *     deno task bank serve [--protocol default|seed]
 *     deno task bank client --sid SID [deposit 10.50 withdraw 3 balance]
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
  TARPIT_MS,
} from "../lib/net/mod.ts";
import {
  Accounts,
  AmountError,
  BANK_NAME,
  BANK_PORT,
  BankClient,
  type BankMode,
  type BobIdentity,
  formatCents,
  loadBobIdentity,
  type OperationOutcome,
  parseAmount,
  seedBobIdentity,
  serveBank,
} from "../lib/bank/mod.ts";
import { CA_PORT, crlMemoryOf, fetchCrl, loadIdentity, loadRoot } from "../lib/ca/mod.ts";
import { PeerRefusedError } from "../lib/wire/mod.ts";
import {
  DEFAULT_CRL_REFRESH_MS,
  parseCertificate,
  parseCrl,
  RevocationChecker,
  RevocationUnavailableError,
  verifyCertificate,
} from "../lib/pki/mod.ts";
import {
  assertPrivateFile,
  dispatch,
  ensureDir,
  exists,
  lockDataDir,
  parseCommand,
  parseHostPort,
  parsePort,
  parsePositiveInt,
  parseProtocolMode,
  parseStudentId,
  printable,
  readTextFile,
  runMain,
  shutdownSignal,
  startOpenSslRsa,
  StepLog,
  UsageError,
} from "../lib/runtime/mod.ts";

const DEFAULT_DATA_DIR = "data/bank";
const SEED_WARNING =
  "--protocol seed: the seed's protocol, flaws included: Bob's public key is not authenticated, " +
  "his proof is a signature over a fixed sentence that anyone can replay, and records are " +
  "encrypted deterministically (AES-256-ECB) with no integrity. For teaching attacks only";

const USAGE = `The bank (system 2): Bob the server and Alice the customer

Usage: deno task bank COMMAND [options]

Commands:
  serve    run Bob, the bank server, on TCP ${BANK_PORT}
  client   run Alice, the customer: the seed's menu, or operations given as arguments or lines

Run 'deno task bank COMMAND --help' for a command's options.`;

/**
 * `--protocol default|seed` (`secure`, the old name of the default, still works for one release,
 * with a warning). lib/bank calls the default mode `secure`: the names meet here.
 */
function parseMode(text: string | undefined, command: string): BankMode {
  const mode = parseProtocolMode(text, { deprecated: { secure: "default" }, command });
  return mode === "seed" ? "seed" : "secure";
}

/** The mode as the command line names it, for log lines. */
function modeName(mode: BankMode): string {
  return mode === "seed" ? "seed" : "default";
}

async function serveCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "bank serve",
    usage: `Usage: deno task bank serve [options]

Runs Bob until SIGINT. Accounts live in DATA-DIR/accounts.db (SQLite, WAL, full sync).
The default protocol needs Bob's certificate from the CA, made once with
  deno task ca issue --server bank --ip 127.0.0.1 --out ${DEFAULT_DATA_DIR}

Options:
  --host HOST          address to listen on (default 127.0.0.1)
  --port PORT          TCP port (default ${BANK_PORT}; 0 picks a free one)
  --data-dir DIR       accounts and, by default, certificate and key (default ${DEFAULT_DATA_DIR})
  --protocol MODE      default or seed (the seed's flawed protocol, for teaching); 'secure'
                       is the deprecated name of default
  --cert FILE          Bob's certificate (default DATA-DIR/bank.cer)
  --key FILE           Bob's private key, mode 0600 (default DATA-DIR/bank.key); seed mode never
                       reads it: it makes a throwaway key for each run, in memory only
  --ca-cert FILE       the root customers' certificates must chain to (default DATA-DIR/cuhk.cer)
  --ca HOST:PORT       the CA whose CRL Bob checks every customer against (default
                       127.0.0.1:${CA_PORT}), fetched at start and again when older than
                       --crl-refresh; revoked customers are refused, and Bob does not start
                       without a CRL that verifies
  --crl FILE           instead of --ca: a CRL file from 'ca crl', read again when older than
                       --crl-refresh
  --crl-refresh SECS   (default ${DEFAULT_CRL_REFRESH_MS / 1000}) with --ca or --crl: a CRL is used
                       only until its nextUpdate; then, without a fresh one, customers are refused
  --idle-timeout SEC   close a session silent this long (default 120)
${MAX_PER_ADDRESS_USAGE}
${HANDSHAKE_LIMIT_USAGE}
  --quiet              log warnings and errors only`,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(BANK_PORT) },
      "data-dir": { type: "string", default: DEFAULT_DATA_DIR },
      protocol: { type: "string" },
      cert: { type: "string" },
      key: { type: "string" },
      "ca-cert": { type: "string" },
      crl: { type: "string" },
      ca: { type: "string" },
      "crl-refresh": { type: "string", default: String(DEFAULT_CRL_REFRESH_MS / 1000) },
      "idle-timeout": { type: "string", default: "120" },
      ...MAX_PER_ADDRESS_OPTION,
      ...HANDSHAKE_LIMIT_OPTIONS,
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const mode = parseMode(values.protocol, "bank serve");
  const handshakeLimit = handshakeLimitOption(values);
  const port = parsePort(values.port);
  const idleTimeoutMs = parsePositiveInt(values["idle-timeout"], "idle-timeout") * 1000;
  const refreshMs = parsePositiveInt(values["crl-refresh"], "crl-refresh") * 1000;
  const dataDir = values["data-dir"];
  const certPath = values.cert ?? `${dataDir}/bank.cer`;
  const keyPath = values.key ?? `${dataDir}/bank.key`;
  const rootPath = values["ca-cert"] ?? `${dataDir}/cuhk.cer`;
  const log = new StepLog("Bob", { quiet: values.quiet });
  log.info(describeRsa());
  if (mode === "seed") log.warn(SEED_WARNING);

  let identity: BobIdentity;
  let root;
  let revocation: RevocationChecker | undefined;
  if (mode === "secure") {
    for (const [path, what] of [[certPath, "certificate"], [keyPath, "key"]] as const) {
      if (!(await exists(path))) {
        throw new Error(
          `No ${what} at ${path}: run 'deno task ca issue --server bank --ip 127.0.0.1 --out ${dataDir}' first`,
        );
      }
    }
    const cert = parseCertificate(await readTextFile(certPath, "Bob's certificate"), certPath);
    root = await loadRoot(rootPath);
    await verifyCertificate(cert, { root, purpose: "serverAuth" });
    // As every server does: a private key that others can read is refused.
    await assertPrivateFile(keyPath);
    identity = await loadBobIdentity(await readTextFile(keyPath, "Bob's key"), cert);
    if (values.crl !== undefined && values.ca !== undefined) {
      throw new UsageError("give --crl or --ca, not both");
    }
    const trusted = root;
    // Bob always checks revocation: with a CRL file when given one, otherwise with the CA's CRL
    // (by default the CA at its default address, as Blackboard does).
    if (values.crl !== undefined) {
      const file = values.crl;
      revocation = new RevocationChecker({
        fetch: async () => parseCrl(await readTextFile(file, "the CRL")),
        source: `the file ${file}`,
        root,
        log,
        refreshMs,
      });
    } else {
      const ca = parseHostPort(values.ca ?? `127.0.0.1:${CA_PORT}`, CA_PORT, "ca");
      revocation = new RevocationChecker({
        fetch: (timeoutMs) => fetchCrl(ca, trusted, timeoutMs),
        source: `the CA at ${ca.hostname}:${ca.port}`,
        root,
        log,
        refreshMs,
      });
    }
    // Do not start without a CRL that verifies: customers would all be refused.
    try {
      await revocation.current();
    } catch (err) {
      if (!(err instanceof RevocationUnavailableError)) throw err;
      throw new Error(
        `${err.message}. Bob checks every customer against the CA's CRL: start the CA first, or give --ca HOST:PORT (default 127.0.0.1:${CA_PORT}) or --crl FILE`,
      );
    }
    log.info(`certificate ${cert.subject} verified against ${rootPath}`);
  } else {
    // Seed mode decrypts textbook RSA: never with the CA-certified bank.key, which stays untouched.
    identity = await seedBobIdentity();
    log.info(
      `seed mode: a throwaway RSA-2048 key pair made for this run, in memory only${
        values.key !== undefined ? ` (${values.key} is not used in seed mode)` : ""
      }`,
    );
  }

  await ensureDir(dataDir, 0o700);
  // One Bob per data directory. SQLite would let two processes share the accounts safely, but the
  // lab keeps one owner per directory, as for the CA and Blackboard: a second Bob is a mistake.
  using _lock = await lockDataDir(dataDir, "Bob");
  using accounts = Accounts.open(`${dataDir}/accounts.db`);
  const server = serveBank({
    mode,
    accounts,
    identity,
    log,
    hostname: values.host,
    port,
    idleTimeoutMs,
    signal: shutdownSignal(),
    ...(root ? { root } : {}),
    ...(revocation ? { revocation } : {}),
    ...maxPerAddressOption(values["max-per-address"]),
    handshakeLimit,
  });
  log.info(describeLimits(server.limits));
  log.info(
    `at most ${handshakeLimit.rate} handshakes a second per address, in bursts of ${handshakeLimit.burst}; beyond, refused after ${
      TARPIT_MS / 1000
    } s`,
  );
  log.info(
    `Bob listening on ${values.host}:${server.port} (${
      modeName(mode)
    } protocol), accounts in ${accounts.path}`,
  );
  await server.finished;
  log.info("Bob stopped");
}

// ------------------------------------------------------------------ client

type Operation =
  | { kind: "deposit" | "withdraw"; amount: string }
  | { kind: "balance" }
  | { kind: "statement" }
  | { kind: "exit" };

const MENU = "Deposit : 1   Withdraw : 2   Check Balance : 3   Exit : 4";
const WORDS: Record<string, Operation["kind"]> = {
  "1": "deposit",
  deposit: "deposit",
  "2": "withdraw",
  withdraw: "withdraw",
  "3": "balance",
  balance: "balance",
  statement: "statement",
  "4": "exit",
  exit: "exit",
};

/** Parses `deposit 10.50 withdraw 3 balance` (or the seed's codes `1 10.50 2 3 3`). */
export function parseOperations(tokens: string[]): Operation[] {
  const ops: Operation[] = [];
  for (let i = 0; i < tokens.length; i++) {
    const word = tokens[i]!;
    const kind = WORDS[word.toLowerCase()];
    if (kind === undefined) {
      throw new UsageError(
        `unknown operation '${word}' (deposit AMOUNT, withdraw AMOUNT, balance, statement, exit)`,
      );
    }
    if (kind === "deposit" || kind === "withdraw") {
      const amount = tokens[++i];
      if (amount === undefined) throw new UsageError(`${kind} needs an amount`);
      try {
        parseAmount(amount);
      } catch (err) {
        if (err instanceof AmountError) throw new UsageError(`${kind}: ${err.message}`);
        throw err;
      }
      ops.push({ kind, amount });
    } else {
      ops.push({ kind });
    }
  }
  return ops;
}

function describe(outcome: OperationOutcome): string {
  // Bob's reason is his text: printable() before the terminal.
  if (!outcome.ok) return `refused: ${printable(outcome.reason)}`;
  const verb = outcome.kind === "deposit" ? "deposited" : "withdrew";
  return `${verb} ${formatCents(outcome.amount)}, balance ${formatCents(outcome.balance)}${
    outcome.replayed ? " (retried: applied once)" : ""
  }`;
}

/** Runs one operation and prints its result line; false when Bob refused it. */
async function perform(client: BankClient, op: Operation): Promise<boolean> {
  switch (op.kind) {
    case "deposit":
    case "withdraw": {
      const outcome = await client.operate(op.kind, op.amount);
      console.log(describe(outcome));
      return outcome.ok;
    }
    case "balance":
      console.log(`balance ${formatCents(await client.balance())}`);
      return true;
    case "statement":
      for (const line of await client.statement()) {
        const [at, kind, amount, status, balance] = line.split("\t");
        console.log(`statement ${at} ${kind} ${amount} ${status}, balance ${balance}`);
      }
      return true;
    case "exit":
      await client.exit();
      return true;
  }
}

function ask(question: string): string | null {
  return prompt(question);
}

/**
 * The seed's menu, for a person at a terminal; amounts are checked before anything is sent. A
 * refusal is shown where it happens, and a normal Exit is a success (status 0).
 */
async function interactive(client: BankClient): Promise<number> {
  for (;;) {
    console.log(MENU);
    const code = ask("Enter operation code (1, 2, 3 or 4):");
    if (code === null || code.trim() === "4") break;
    const kind = WORDS[code.trim().toLowerCase()];
    if (kind === undefined || kind === "exit") {
      console.log(`Unknown operation code '${code.trim()}'`);
      continue;
    }
    let op: Operation = { kind } as Operation;
    if (kind === "deposit" || kind === "withdraw") {
      // A person at a terminal may type spaces around the number: drop them here, so that what
      // is checked and sent is the bare number (the parser itself accepts nothing around it).
      const amount = (ask(`Enter the amount to ${kind}:`) ?? "").trim();
      try {
        parseAmount(amount);
      } catch (err) {
        if (err instanceof AmountError) {
          console.log(err.message);
          continue;
        }
        throw err;
      }
      op = { kind, amount };
    }
    await perform(client, op);
  }
  await client.exit();
  return 0;
}

/**
 * Splits `[options…] [operations…]`: operations start at the first word that is not an option or
 * an option's value, so `withdraw -5` reaches the amount check instead of the option parser.
 */
function splitOperations(args: string[]): { options: string[]; operations: string[] } {
  const flags = new Set(["--quiet", "--help", "-h"]);
  let i = 0;
  while (i < args.length) {
    const a = args[i]!;
    if (a === "--") return { options: args.slice(0, i), operations: args.slice(i + 1) };
    if (!a.startsWith("-")) break;
    i += flags.has(a) || a.includes("=") ? 1 : 2;
  }
  return { options: args.slice(0, i), operations: args.slice(i) };
}

async function clientCommand(args: string[]): Promise<number | void> {
  const split = splitOperations(args);
  const parsed = parseCommand(split.options, {
    name: "bank client",
    usage: `Usage: deno task bank client [options] [OPERATION...]

Connects to Bob, runs the handshake (STEP 1-5) and banks (STEP 6). At a terminal with no
operations, shows the seed's menu (${MENU}).
Otherwise runs the operations given as arguments, or one per line on standard input:
  deposit AMOUNT | withdraw AMOUNT | balance | statement | exit    (or the seed's 1, 2, 3, 4)
and prints one result per line; exits 1 if Bob refused any, 2 on a bad amount (nothing sent).

Options:
  --bank HOST:PORT     Bob (default 127.0.0.1:${BANK_PORT})
  --protocol MODE      default or seed (the seed's flawed protocol, for teaching); 'secure'
                       is the deprecated name of default
  --sid SID            the customer's student ID; home defaults to data/students/SID
  --home DIR           the student home from 'student enroll' (key, certificate, cuhk.cer)
  --ca-cert FILE       the root Bob's certificate must chain to (default HOME/cuhk.cer)
  --bank-name NAME     the name Bob's certificate must carry, whatever address --bank gives
                       (default ${BANK_NAME})
  --customer NAME      seed mode: the account to claim (default the SID, else 'alice')
  --quiet              log warnings and errors only`,
    options: {
      bank: { type: "string", default: `127.0.0.1:${BANK_PORT}` },
      protocol: { type: "string" },
      sid: { type: "string" },
      home: { type: "string" },
      "ca-cert": { type: "string" },
      "bank-name": { type: "string", default: BANK_NAME },
      customer: { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const positionals = split.operations;
  const mode = parseMode(values.protocol, "bank client");
  const bank = parseHostPort(values.bank, BANK_PORT, "bank");
  const sid = values.sid === undefined ? undefined : parseStudentId(values.sid);

  // Every operation is checked before anything is sent.
  const tty = Deno.stdin.isTerminal();
  let ops: Operation[] | null = null;
  if (positionals.length > 0) {
    ops = parseOperations(positionals);
  } else if (!tty) {
    const text = await new Response(Deno.stdin.readable).text();
    ops = parseOperations(text.split(/\s+/).filter((t) => t !== ""));
  }

  const log = new StepLog(`Alice`, { quiet: values.quiet });
  let client: BankClient;
  if (mode === "secure") {
    const home = values.home ?? (sid ? `data/students/${sid}` : undefined);
    if (home === undefined) throw new UsageError("give --sid or --home (the customer's key)");
    const identity = await loadIdentity(home);
    if (sid !== undefined && identity.sid !== sid) {
      throw new UsageError(`${home} holds the certificate of ${identity.sid}, not ${sid}`);
    }
    const root = values["ca-cert"] ? await loadRoot(values["ca-cert"]) : identity.root;
    client = new BankClient({
      bank,
      mode,
      log: log.child(identity.sid),
      root,
      cert: identity.cert,
      keyPem: identity.keyPem,
      crlMemory: crlMemoryOf({ home, root }),
      expectedHost: values["bank-name"],
    });
  } else {
    log.warn(SEED_WARNING);
    const customer = values.customer ?? sid ?? "alice";
    client = new BankClient({ bank, mode, log: log.child(customer), customer });
  }
  try {
    await client.ensureSession();
    if (ops === null) return await interactive(client);
    let status = 0;
    for (const op of ops) {
      if (!(await perform(client, op))) status = 1;
      if (op.kind === "exit") return status;
    }
    await client.exit();
    return status;
  } catch (err) {
    // A refusal carries Bob's words (or, in seed mode, anyone's on the path): printable().
    if (err instanceof PeerRefusedError) throw new Error(printable(err.message));
    throw err;
  } finally {
    client.close();
  }
}

export async function main(args: string[]): Promise<number | void> {
  startOpenSslRsa(); // then --allow-ffi is gone (lib/crypto/openssl_rsa.ts)
  return await dispatch("bank", USAGE, { serve: serveCommand, client: clientCommand }, args);
}

if (import.meta.main) await runMain("bank", main);
