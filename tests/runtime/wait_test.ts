/**
 * `unlessAborted`: a promise raced against a shutdown signal, in a loop, keeps nothing alive (a
 * session's loop used to race every message against one long-lived promise, which held every
 * 256 KiB chunk of an upload: Blackboard's memory grew with the report).
 */

import assert from "node:assert/strict";
import { unlessAborted } from "../../lib/runtime/mod.ts";

/** An AbortSignal that counts its listeners. */
function countingSignal() {
  const controller = new AbortController();
  const signal = controller.signal;
  let listeners = 0;
  const add = signal.addEventListener.bind(signal);
  const remove = signal.removeEventListener.bind(signal);
  signal.addEventListener = ((...args: Parameters<AbortSignal["addEventListener"]>) => {
    listeners++;
    add(...args);
  }) as AbortSignal["addEventListener"];
  signal.removeEventListener = ((...args: Parameters<AbortSignal["removeEventListener"]>) => {
    listeners--;
    remove(...args);
  }) as AbortSignal["removeEventListener"];
  return { controller, signal, listeners: () => listeners };
}

Deno.test("unlessAborted: each call removes its listener once the promise settles", async () => {
  const { signal, listeners } = countingSignal();
  for (let i = 0; i < 1000; i++) {
    assert.equal(await unlessAborted(Promise.resolve(i), signal), i);
  }
  assert.equal(listeners(), 0, "no listener left behind");
  await assert.rejects(unlessAborted(Promise.reject(new Error("x")), signal), /x/);
  assert.equal(listeners(), 0);
});

Deno.test("unlessAborted: 'aborted' as soon as the signal aborts; a later rejection is ignored", async () => {
  const { controller, signal, listeners } = countingSignal();
  let reject!: (err: Error) => void;
  const pending = new Promise<number>((_, r) => (reject = r));
  const raced = unlessAborted(pending, signal);
  controller.abort();
  assert.equal(await raced, "aborted");
  assert.equal(listeners(), 0);
  reject(new Error("the connection closed under the read"));
  // Already aborted: answered at once.
  assert.equal(await unlessAborted(new Promise(() => {}), signal), "aborted");
});
