/**
 * The actors' `deno task` lines through tasks/launch.ts, as a user runs them: a server binds the
 * address `--host` gives (which the old loopback-only flags refused), a client dials the host it is
 * given, standard input reaches the actor, signals reach it, and the exit status is the actor's.
 */

import assert from "node:assert/strict";
import {
  denoRunArgs,
  FFI_ACTORS,
  ffiFlags,
  RunningProcess,
  V8_MEMORY_FLAG,
} from "../../lib/runtime/mod.ts";
import { hasCommand, ROOT, TestPki } from "../_fixtures/helpers.ts";
import { startChatActor } from "../_fixtures/chat.ts";

const SID = "1155000077";

/** A scratch folder inside the project (the tasks may write there only), removed when disposed. */
async function projectScratch(): Promise<AsyncDisposable & { path: string; rel: string }> {
  await Deno.mkdir(`${ROOT}/data`, { recursive: true });
  const path = await Deno.makeTempDir({ dir: `${ROOT}/data`, prefix: "test-launch-" });
  return {
    path,
    rel: path.slice(ROOT.length + 1),
    async [Symbol.asyncDispose]() {
      await Deno.remove(path, { recursive: true }).catch(() => {});
    },
  };
}

function task(args: string[], options: { stdin?: string } = {}): RunningProcess {
  return new RunningProcess(Deno.execPath(), ["task", "--quiet", ...args], {
    name: `deno task ${args.slice(0, 2).join(" ")}`,
    cwd: ROOT,
    ...options,
  });
}

Deno.test("deno task ca serve --host 127.0.0.2 binds it (the old flags refuse it); a student enrols through deno task at 127.0.0.2; SIGINT stops the CA cleanly, status 0", async () => {
  await using dir = await projectScratch();
  const ca = `${dir.rel}/ca`;
  // The premise: with the tasks' old network permission, this bind is refused.
  const old = await new RunningProcess(Deno.execPath(), [
    "run",
    "--allow-net=127.0.0.1,localhost,[::1]",
    "--allow-read=.",
    "--allow-write=.",
    "actors/ca.ts",
    "serve",
    "--host",
    "127.0.0.2",
    "--port",
    "0",
    "--data-dir",
    ca,
  ], { cwd: ROOT }).result(30_000);
  assert.notEqual(old.code, 0);
  assert.match(old.stderr, /Requires net access to "127\.0\.0\.2:0"/);

  await using server = task([
    "ca",
    "serve",
    "--host",
    "127.0.0.2",
    "--port",
    "0",
    "--data-dir",
    ca,
  ]);
  const port = (await server.waitFor(/listening on 127\.0\.0\.2:(\d+)/))[1]!;
  const code = task(["ca", "code", "--sid", SID, "--data-dir", ca]);
  const { code: status, stdout } = await code.result(30_000);
  assert.equal(status, 0, code.stderr);
  const enrol = await task([
    "student",
    "enroll",
    "--sid",
    SID,
    "--code",
    stdout.trim(),
    "--ca",
    `127.0.0.2:${port}`,
    "--ca-cert",
    `${ca}/cuhk.cer`,
    "--home",
    `${dir.rel}/student`,
  ]).result(60_000);
  assert.equal(enrol.code, 0, enrol.stderr);
  assert.match(enrol.stdout, new RegExp(`^SID: ${SID} sign finished\\.$`, "m"));
  assert.match(enrol.stderr, /sending CSR \(CN=1155000077\) to the CA at 127\.0\.0\.2:\d+/);

  // SIGINT to `deno task` alone (not a terminal's process group): it reaches the CA through the
  // launcher, which waits for the CA's own shutdown and exits with its status.
  const stopped = await server.stop("SIGINT");
  assert.equal(stopped.code, 0, server.stderr);
  assert.match(server.stderr, /\[CUHK\] stopped$/m);
});

Deno.test("the launcher as the ca task runs it: ca serve --host 0.0.0.0 binds every address, a student dials it by name (localhost); SIGTERM to the launcher alone reaches the CA, which shuts down, and the launcher exits with its status", async () => {
  await using dir = await projectScratch();
  const ca = `${dir.rel}/ca`;
  // The launcher itself, as deno.json's line runs it, so that a signal goes to it and no further.
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const line: string = config.tasks.ca.command;
  assert.match(line, /^deno run --allow-run=deno tasks\/launch\.ts .*actors\/ca\.ts$/);
  const words = line.split(/\s+/).slice(1);
  await using server = new RunningProcess(Deno.execPath(), [
    ...words,
    "serve",
    "--host",
    "0.0.0.0",
    "--port",
    "0",
    "--data-dir",
    ca,
  ], { cwd: ROOT, name: "launch ca serve" });
  const port = (await server.waitFor(/listening on 0\.0\.0\.0:(\d+)/))[1]!;
  // The task's --allow-ffi: OpenSSL signs the CA's certificates (lib/crypto/openssl_rsa.ts).
  assert.match(server.stderr, /\[CUHK\] RSA signatures by OpenSSL 3\.\S+ .*\(libcrypto\.so\.3\)/);
  const code = await task(["ca", "code", "--sid", SID, "--data-dir", ca]).result(30_000);
  assert.equal(code.code, 0, code.stderr);
  const enrol = await task([
    "student",
    "enroll",
    "--sid",
    SID,
    "--code",
    code.stdout.trim(),
    "--ca",
    `localhost:${port}`,
    "--ca-cert",
    `${ca}/cuhk.cer`,
    "--home",
    `${dir.rel}/student`,
  ]).result(60_000);
  assert.equal(enrol.code, 0, enrol.stderr);
  assert.match(enrol.stdout, new RegExp(`^SID: ${SID} sign finished\\.$`, "m"));

  const stopped = await server.stop("SIGTERM");
  assert.equal(stopped.code, 0, server.stderr);
  assert.equal(stopped.signal, null, "the launcher ended by itself, not by the signal");
  assert.match(server.stderr, /\[CUHK\] stopped$/m);
});

Deno.test("through the launcher, standard input reaches the actor and its exit status comes back: usage errors are 2, from the launcher too", async () => {
  // Operations read from standard input (not a terminal) are checked before anything is sent.
  const r = await task(["bank", "client", "--sid", SID], { stdin: "deposit 5\nwithdraw -5\n" })
    .result(30_000);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, /^bank client: withdraw: Invalid amount '-5': it must be positive$/m);
  const missing = await task(["student", "fingerprint", "--ca-cert", "data/no-such.cer"]).result(
    30_000,
  );
  assert.equal(missing.code, 1, missing.stderr);
  // A value that would widen the permission never reaches Deno's flags.
  const wide = await task(["chat", "client", "--server", "10.0.0.1,0.0.0.0:8443"]).result(30_000);
  assert.equal(wide.code, 2);
  assert.equal(
    wide.stderr,
    "chat client: --server must name an IP address or a host name (HOST or HOST:PORT), got '10.0.0.1,0.0.0.0:8443'\nTry 'chat client --help' for more information.\n",
  );
  const help = await task(["bank", "client", "--help"]).result(30_000);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: deno task bank client/);
});

/** `deno task ARGS…` at a real terminal (a pty), typing each answer (Python escapes) on its prompt. */
function atTerminal(dialog: string[], args: string[]): RunningProcess {
  return new RunningProcess("python3", [
    `${ROOT}/tests/_fixtures/pty_dialog.py`,
    "--keys",
    ...dialog,
    "--",
    Deno.execPath(),
    "task",
    "--quiet",
    ...args,
  ], { cwd: ROOT, name: `deno task ${args.slice(0, 2).join(" ")} at a terminal` });
}

const hasPython = await hasCommand("python3");

Deno.test({
  name:
    "at a terminal through the launcher: Ctrl-C stops 'ca serve' as it always did (graceful, status 0); the chat client's line editor (raw mode) sends a line and leaves on Ctrl-C",
  ignore: !hasPython,
  fn: async () => {
    await using dir = await projectScratch();
    // Ctrl-C in a cooked terminal: SIGINT to the foreground group (deno task, launcher, CA).
    await using ca = atTerminal(["listening on", "\\x03"], [
      "ca",
      "serve",
      "--port",
      "0",
      "--data-dir",
      `${dir.rel}/ca`,
    ]);
    const caStatus = await ca.status;
    assert.equal(caStatus.code, 0, ca.stdout);
    assert.match(ca.stdout, /\[CUHK\] stopped/);
    // At a terminal Deno asked to read /proc/self/limits: the launcher runs actors with no prompt.
    assert.doesNotMatch(ca.stdout, /Deno requests/);

    // The chat client in raw mode: typed text, Enter, and Ctrl-C as a key.
    await using pki = await TestPki.start();
    const { server, port, cert } = await startChatActor(pki);
    await using _server = server;
    // The chat task reads inside the project only: the root as a student keeps it there.
    await Deno.copyFile(cert.rootPath, `${dir.path}/cuhk.cer`);
    await using alice = atTerminal([
      ...["joined as alice", "hello\\r"],
      ...["<alice> hello", "\\x03"],
    ], [
      "chat",
      "client",
      "--server",
      `127.0.0.1:${port}`,
      "--ca-cert",
      `${dir.rel}/cuhk.cer`,
      "--nick",
      "alice",
    ]);
    const status = await alice.status;
    assert.equal(status.code, 0, alice.stdout);
    assert.match(alice.stdout, /<alice> hello/);
    assert.match(alice.stdout, /you left the chat\. Goodbye/);
    await server.waitFor(/alice/);
  },
});

Deno.test("the launcher's command line: no prompt, the actors' V8 memory flag, the network its arguments name, then the task's flags, the script and its arguments", async () => {
  const { launchArgs } = await import("../../tasks/launch.ts");
  const flags = ["--allow-read=.", "--allow-write=data"];
  const actor = ["actors/chat.ts", "serve", "--host", "10.0.0.1"];
  assert.deepEqual(launchArgs([...flags, ...actor]), [
    "run",
    "--no-prompt",
    V8_MEMORY_FLAG,
    "--allow-net=127.0.0.1,localhost,[::1],10.0.0.1",
    ...flags,
    ...actor,
  ]);
  assert.equal(V8_MEMORY_FLAG, "--v8-flags=--max-semi-space-size=8,--expose-gc");
});

Deno.test("--allow-ffi: deno.json grants it to exactly the actors that use it once at start (FFI_ACTORS), and the harness grants it as their tasks do", async () => {
  const config = JSON.parse(await Deno.readTextFile(`${ROOT}/deno.json`));
  const granted = Object.entries(config.tasks as Record<string, { command: string }>)
    .filter(([, t]) => /tasks\/launch\.ts .*actors\/[a-z]+\.ts$/.test(t.command))
    .filter(([, t]) => t.command.split(/\s+/).includes("--allow-ffi"))
    .map(([name]) => name)
    .sort();
  assert.deepEqual(granted, [...FFI_ACTORS].sort());
  assert.deepEqual(ffiFlags("actors/ca.ts"), ["--allow-ffi"]);
  assert.deepEqual(ffiFlags(`${ROOT}/actors/chat.ts`), ["--allow-ffi"]);
  assert.deepEqual(ffiFlags("actors/trudy.ts"), []);
  assert.deepEqual(ffiFlags("tasks/demo.ts"), []);
  assert.ok(denoRunArgs("actors/bank.ts", [], []).includes("--allow-ffi"));
  assert.ok(!denoRunArgs("actors/trudy.ts", [], []).includes("--allow-ffi"));
});
