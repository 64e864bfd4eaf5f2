#!/usr/bin/env -S deno run --allow-net=127.0.0.1,localhost,[::1] --allow-read --allow-ffi
/**
 * The TLS chat (system 3): a server for many clients and a client, interactive or scripted.
 *
 *     deno task chat serve [--host 127.0.0.1] [--port 8443] [--cert FILE --key FILE]
 *     deno task chat client --nick NAME [--server HOST:PORT] [--server-name chat] [--tls12]
 *
 * The task grants `--allow-ffi` for one thing: the server sets TCP_NODELAY on its listening socket
 * at start (lib/net/nodelay.ts). The permission is revoked right after, before the first client is
 * served, and at once by every other command.
 */

import {
  CHAT_NAME,
  CHAT_PORT,
  ChatClient,
  type ChatLimits,
  DEFAULT_CHAT_LIMITS,
  editedLines,
  formatServerMessage,
  LineEditor,
  MAX_TEXT,
  readLines,
  runInteractive,
  runScript,
  type ScriptStep,
  serveChat,
} from "../lib/chat/mod.ts";
import { keyLogProblem } from "../lib/net/mod.ts";
import {
  assertPrivateFile,
  dispatch,
  dropFfi,
  parseCommand,
  parseHostPort,
  parsePort,
  parsePositiveInt,
  PROJECT_ROOT,
  readTextFile,
  required,
  runMain,
  shutdownSignal,
  StepLog,
  UsageError,
} from "../lib/runtime/mod.ts";

const DEFAULT_DIR = "data/chat";
/** What 'ca issue' writes for the chat: its name, and localhost and 127.0.0.1 in the SAN too. */
const ISSUE_COMMAND =
  `deno task ca issue --server ${CHAT_NAME} --dns localhost --ip 127.0.0.1 --out ${DEFAULT_DIR}`;
const D = DEFAULT_CHAT_LIMITS;

const USAGE = `The TLS chat (system 3)

Usage: deno task chat COMMAND [options]

Commands:
  serve    run the chat server on TLS port ${CHAT_PORT}
  client   join the chat: interactive, or scripted with --send/--expect

First issue the server's certificate from the CA (it names the service, '${CHAT_NAME}'):
  ${ISSUE_COMMAND}

Run 'deno task chat COMMAND --help' for a command's options.`;

async function serveCommand(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "chat serve",
    usage: `Usage: deno task chat serve [options]

Serves the chat over TLS (rustls: TLS 1.3 and 1.2 with forward-secret AEAD suites only) until
SIGINT, which tells every client the server is shutting down. Prints 'listening on HOST:PORT'.
With --allow-ffi (the task grants it) every connection gets TCP_NODELAY, so that no TLS 1.2
handshake waits 40 ms for a delayed ACK; the permission is revoked before the first client.

Options:
  --host HOST            address to listen on (default 127.0.0.1)
  --port PORT            TLS port (default ${CHAT_PORT}; 0 picks a free one)
  --cert FILE            server certificate from the CA, naming '${CHAT_NAME}' (default
                         ${DEFAULT_DIR}/${CHAT_NAME}.cer)
  --key FILE             its private key, mode 0600 (default ${DEFAULT_DIR}/${CHAT_NAME}.key)
  --max-clients N        clients at once (default ${D.maxClients})
  --max-per-address N    connections one address may hold (default ${D.maxPerAddress})
  --max-text N           longest message in characters (default ${D.maxText}, at most ${MAX_TEXT})
  --rate N               messages per second per client (default ${D.rate})
  --burst N              messages a client may send at once above the rate (default ${D.burst})
  --max-queue KIB        KiB queued for a slow client before it is dropped (default ${
      D.maxQueueBytes / 1024
    })
  --idle-timeout SEC     drop a client silent this long (default ${D.idleTimeoutMs / 1000})
  --hello-timeout SEC    TLS handshake and hello deadline (default ${D.helloTimeoutMs / 1000})
  --write-timeout SEC    drop a client that takes no data this long (default ${
      D.writeTimeoutMs / 1000
    })
  --quiet                log warnings and errors only`,
    options: {
      host: { type: "string", default: "127.0.0.1" },
      port: { type: "string", default: String(CHAT_PORT) },
      cert: { type: "string", default: `${DEFAULT_DIR}/${CHAT_NAME}.cer` },
      key: { type: "string", default: `${DEFAULT_DIR}/${CHAT_NAME}.key` },
      "max-clients": { type: "string" },
      "max-per-address": { type: "string" },
      "max-text": { type: "string" },
      rate: { type: "string" },
      burst: { type: "string" },
      "max-queue": { type: "string" },
      "idle-timeout": { type: "string" },
      "hello-timeout": { type: "string" },
      "write-timeout": { type: "string" },
      quiet: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const { values } = parsed;
  const port = parsePort(values.port);
  const limits: Partial<ChatLimits> = {};
  const int = (name: keyof typeof values, set: (n: number) => void) => {
    const v = values[name];
    if (typeof v === "string") set(parsePositiveInt(v, name));
  };
  int("max-clients", (n) => (limits.maxClients = n));
  int("max-per-address", (n) => (limits.maxPerAddress = n));
  int("max-text", (n) => {
    if (n > MAX_TEXT) throw new UsageError(`--max-text must be at most ${MAX_TEXT}`);
    limits.maxText = n;
  });
  int("rate", (n) => (limits.rate = n));
  int("burst", (n) => (limits.burst = n));
  int("max-queue", (n) => (limits.maxQueueBytes = n * 1024));
  int("idle-timeout", (n) => (limits.idleTimeoutMs = n * 1000));
  int("hello-timeout", (n) => (limits.helloTimeoutMs = n * 1000));
  int("write-timeout", (n) => (limits.writeTimeoutMs = n * 1000));
  const cert = await readTextFile(values.cert, "the server certificate");
  await assertPrivateFile(values.key).catch((err) => {
    if (err instanceof Deno.errors.NotFound) {
      throw new Error(
        `Cannot read the server key: ${values.key} does not exist (${ISSUE_COMMAND})`,
      );
    }
    throw err;
  });
  const key = await readTextFile(values.key, "the server key");
  const log = new StepLog("chat", { quiet: values.quiet });
  const server = serveChat({
    cert,
    key,
    log,
    hostname: values.host,
    port,
    limits,
    signal: shutdownSignal(),
  });
  // FFI served its one purpose (TCP_NODELAY on the listening socket): nothing else may use it.
  dropFfi();
  const host = values.host.includes(":") ? `[${values.host}]` : values.host;
  // Always printed (also with --quiet): scripts wait for this line.
  console.error(`listening on ${host}:${server.port} (TLS, certificate ${values.cert})`);
  await server.finished;
  log.info("stopped");
}

/** `--send`, `--expect` and `--sleep` in the order given. */
function scriptSteps(args: string[]): ScriptStep[] {
  const steps: ScriptStep[] = [];
  for (let i = 0; i < args.length; i++) {
    const m = /^--(send|expect|sleep)(?:=(.*))?$/s.exec(args[i]!);
    if (!m) continue;
    const value = m[2] ?? args[++i];
    if (value === undefined) throw new UsageError(`option '--${m[1]}' needs a value`);
    if (m[1] === "send") steps.push({ send: value });
    else if (m[1] === "sleep") steps.push({ sleepMs: parsePositiveInt(value, "sleep") });
    else {
      try {
        steps.push({ expect: new RegExp(value) });
      } catch (err) {
        throw new UsageError(
          `--expect '${value}' is not a valid pattern: ${(err as Error).message}`,
        );
      }
    }
  }
  return steps;
}

async function clientCommand(args: string[]): Promise<number> {
  const parsed = parseCommand(args, {
    name: "chat client",
    usage: `Usage: deno task chat client --nick NAME [options]

Joins the chat over TLS, verifying the server's certificate against the CA root only (not Deno's
or the system's root store, nor DENO_CERT) and that it names the service ('${CHAT_NAME}'), whatever
address --server gives.
Interactive: type lines to broadcast them; /who lists who is online, /msg NICK text sends a
private message, /quit leaves. Messages are printed with time and sender on standard output.

Scripted (when any --send, --expect or --sleep is given, run in the order given, then /quit):
  deno task chat client --nick alice --expect "bob joined" --send "hi bob" --expect "<bob> hi"

Options:
  --nick NAME          nickname: 1-24 letters, digits, '_', '.' or '-' (unique, ignoring case;
                       one that looks like a nickname online, such as Cyrillic аdmin, is refused)
  --server HOST:PORT   the chat server (default 127.0.0.1:${CHAT_PORT})
  --ca-cert FILE       the CA root to trust (default ${DEFAULT_DIR}/cuhk.cer)
  --server-name NAME   the name the server's certificate must carry (default ${CHAT_NAME})
  --tls12              TLS 1.2 (maxVersion TLSv1.2), as in the seed's capture; default TLS 1.3
  --send LINE          send a line (repeatable)
  --expect REGEX       wait for an output line matching REGEX (repeatable)
  --sleep MS           pause (repeatable)
  --timeout SEC        how long each --expect may wait (default 10)`,
    options: {
      nick: { type: "string" },
      server: { type: "string", default: `127.0.0.1:${CHAT_PORT}` },
      "ca-cert": { type: "string", default: `${DEFAULT_DIR}/cuhk.cer` },
      "server-name": { type: "string", default: CHAT_NAME },
      tls12: { type: "boolean", default: false },
      send: { type: "string", multiple: true },
      expect: { type: "string", multiple: true },
      sleep: { type: "string", multiple: true },
      timeout: { type: "string", default: "10" },
    },
  });
  if (!parsed) return 0;
  const { values } = parsed;
  const nick = required(values.nick, "nick");
  const { hostname, port } = parseHostPort(values.server, CHAT_PORT, "server");
  const timeoutMs = parsePositiveInt(values.timeout, "timeout") * 1000;
  const steps = scriptSteps(args);
  const ca = await readTextFile(values["ca-cert"], "the CA root certificate");
  const log = new StepLog(`chat ${nick}`);
  log.info(
    `connecting to ${hostname}:${port} (${values.tls12 ? "TLS 1.2" : "TLS 1.3"}, expecting ${
      values["server-name"]
    })`,
  );
  const client = await ChatClient.join({
    hostname,
    port,
    caCerts: [ca],
    nick,
    tls12: values.tls12,
    serverName: values["server-name"],
  });
  log.info(
    `${client.protocol}${
      client.cipher ? ` ${client.cipher}` : ""
    }: server certificate verified against ${values["ca-cert"]} (name ${values["server-name"]})`,
  );
  const encoder = new TextEncoder();
  const write = (text: string): void => void Deno.stdout.writeSync(encoder.encode(text));
  let print = (line: string): void => write(line + "\n");
  let warn = (line: string): void => log.warn(line);
  if (steps.length > 0) {
    print(formatServerMessage(client.welcome));
    return (await runScript(client, steps, { print, warn, timeoutMs })).quit ? 0 : 1;
  }
  if (!(Deno.stdin.isTerminal() && Deno.stdout.isTerminal())) {
    print(formatServerMessage(client.welcome));
    const end = await runInteractive(client, readLines(Deno.stdin.readable), { print, warn });
    return end.quit ? 0 : 1;
  }
  // At a terminal: the line being typed is kept, and what arrives is printed above it.
  const editor = new LineEditor(write);
  print = (line) => editor.print(line);
  warn = (line) => editor.print(`! ${line}`);
  Deno.stdin.setRaw(true);
  try {
    print(formatServerMessage(client.welcome));
    const end = await runInteractive(client, editedLines(Deno.stdin.readable, editor), {
      print,
      warn,
    });
    write("\r\x1b[K");
    return end.quit ? 0 : 1;
  } finally {
    Deno.stdin.setRaw(false);
  }
}

export async function main(args: string[]): Promise<number | void> {
  if (args[0] !== "serve") dropFfi();
  // Before any TLS: the runtime writes each session's keys to SSLKEYLOGFILE.
  const keyLog = args.includes("--help")
    ? null
    : await keyLogProblem(PROJECT_ROOT, (line) => console.error(`chat: ${line}`));
  if (keyLog !== null) throw new UsageError(keyLog);
  return await dispatch("chat", USAGE, { serve: serveCommand, client: clientCommand }, args);
}

if (import.meta.main) await runMain("chat", main);
