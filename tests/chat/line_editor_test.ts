/**
 * The chat client's input line at a terminal: a message that arrives while the user types is
 * printed above the input line, and the prompt and what was typed are drawn again under it.
 */

import assert from "node:assert/strict";
import { LineEditor } from "../../lib/chat/mod.ts";
import { hasCommand, PROJECT_ROOT, runActor, TestPki } from "../_fixtures/helpers.ts";
import { startChatActor } from "../_fixtures/chat.ts";
import { denoCommand, denoRunArgs, RunningProcess } from "../../lib/runtime/mod.ts";

function editor() {
  let out = "";
  const e = new LineEditor((t) => (out += t));
  return { e, out: () => out, reset: () => (out = "") };
}

Deno.test("line editor: an incoming line goes above the typed text, which is drawn again", () => {
  const { e, out, reset } = editor();
  e.start();
  assert.deepEqual(e.feed("hel"), { lines: [], end: null });
  assert.equal(out(), "\r\x1b[K> hel");
  reset();
  e.print("12:00:01 <bob> hi alice");
  assert.equal(out(), "\r\x1b[K12:00:01 <bob> hi alice\r\n\r\x1b[K> hel");
  assert.deepEqual(e.feed("lo\r"), { lines: ["hello"], end: null });
  assert.equal(e.typed, "");
});

Deno.test("line editor: backspace, Ctrl-U, escape sequences, control characters, Ctrl-C, Ctrl-D", () => {
  const { e } = editor();
  e.feed("abc\x7f\x7fx");
  assert.equal(e.typed, "ax");
  e.feed("\x15");
  assert.equal(e.typed, "");
  // Arrows and other escape sequences, and stray control characters, are not text.
  e.feed("\x1b[A\x1b[1;5Cok\x01\x07\x1bOP");
  assert.equal(e.typed, "ok");
  assert.deepEqual(e.feed("\x04"), { lines: [], end: null }, "Ctrl-D ends only an empty line");
  assert.deepEqual(e.feed("\r\x04"), { lines: ["ok"], end: "eof" });
  assert.deepEqual(editor().e.feed("a\x03b"), { lines: [], end: "interrupt" });
  // Text beyond ASCII is kept whole, and one Backspace removes one character.
  const { e: u } = editor();
  u.feed("zoë🙂\x7f");
  assert.equal(u.typed, "zoë");
});

Deno.test({
  name:
    "chat client at a real terminal: bob's message lands above alice's half-typed line, which is drawn again",
  ignore: !(await hasCommand("python3")),
  fn: async () => {
    await using pki = await TestPki.start();
    const { server, port, cert } = await startChatActor(pki);
    await using _server = server;
    const common = ["--server", `127.0.0.1:${port}`, "--ca-cert", cert.rootPath];
    // Alice at a pty: types "hel", then (after bob's line) "lo" and Enter, then Ctrl-C.
    const dialog = new RunningProcess("python3", [
      `${PROJECT_ROOT}/tests/_fixtures/pty_dialog.py`,
      "--keys",
      ...["joined as alice", "hel"],
      ...["<bob> hi alice", "lo\\r"],
      ...["<alice> hello", "\\x03"],
      "--",
      denoCommand(),
      ...denoRunArgs(`${PROJECT_ROOT}/actors/chat.ts`, ["client", ...common, "--nick", "alice"], [
        "--allow-net=127.0.0.1",
        "--allow-read",
      ]),
    ]);
    await using _dialog = dialog;
    await dialog.waitFor(/> hel/).catch((err) => {
      throw new Error(`${err.message}; the terminal showed: ${JSON.stringify(dialog.output)}`);
    });
    const bob = await runActor("actors/chat.ts", [
      "client",
      ...common,
      "--nick",
      "bob",
      "--send",
      "hi alice",
      "--expect",
      "<alice> hello",
    ]);
    assert.equal(bob.code, 0, bob.stderr);
    const status = await dialog.status;
    const out = dialog.stdout;
    assert.equal(status.code, 0, out);
    // (The terminal turns each \n into \r\n.)
    // deno-lint-ignore no-control-regex
    assert.match(out, /<bob> hi alice\r\r?\n\r\x1b\[K> hel/);
    assert.doesNotMatch(out, /> > /, "one prompt at a time");
    assert.match(out, /<alice> hello/);
    assert.match(out, /you left the chat\. Goodbye/);
  },
});
