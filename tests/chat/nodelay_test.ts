/**
 * TLS 1.2 handshakes with the chat server do not wait for a delayed ACK: the server actor, with the
 * `--allow-ffi` its task grants, sets TCP_NODELAY on its listening socket (lib/net/nodelay.ts).
 * Without it (the control), each handshake waits about 40 ms: the server's Finished is held by
 * Nagle's algorithm until the client acknowledges the server's Change Cipher Spec, and a Linux
 * client delays that ACK by 40 ms at least. The capture scenario chat-tls12 shows the same on the
 * wire (tests/scenarios/scenarios_test.ts).
 */

import assert from "node:assert/strict";
import { connectTls } from "../../lib/net/mod.ts";
import { TestPki } from "../_fixtures/helpers.ts";
import { startChatActor } from "../_fixtures/chat.ts";

const HANDSHAKES = 9;

async function startServer(pki: TestPki, ffi: boolean) {
  const { server, port, cert } = await startChatActor(pki, { ffi });
  return { server, port, root: await Deno.readTextFile(cert.rootPath) };
}

/** The median time of `HANDSHAKES` TLS 1.2 handshakes (TCP connect included), in ms. */
async function medianHandshakeMs(port: number, root: string): Promise<number> {
  const times: number[] = [];
  for (let i = 0; i < HANDSHAKES; i++) {
    const started = performance.now();
    const conn = await connectTls({
      hostname: "127.0.0.1",
      port,
      caCerts: [root],
      serverName: "chat",
      tls12: true,
    });
    times.push(performance.now() - started);
    assert.equal(conn.protocol, "TLSv1.2");
    conn.stream.close();
  }
  times.sort((a, b) => a - b);
  return times[Math.floor(times.length / 2)]!;
}

Deno.test("TLS 1.2 handshakes with the chat server do not wait 40 ms for a delayed ACK (TCP_NODELAY through FFI)", async () => {
  await using pki = await TestPki.start();
  const fast = await startServer(pki, true);
  {
    await using _ = fast.server;
    await fast.server.waitFor(/TCP_NODELAY on every connection/);
    const ms = await medianHandshakeMs(fast.port, fast.root);
    assert.ok(ms < 25, `median TLS 1.2 handshake ${ms.toFixed(1)} ms with TCP_NODELAY`);
  }
  // The control: the same server without --allow-ffi says why, and its handshakes stall.
  const slow = await startServer(pki, false);
  await using _ = slow.server;
  await slow.server.waitFor(/TCP_NODELAY not set \(no --allow-ffi\)/);
  const ms = await medianHandshakeMs(slow.port, slow.root);
  assert.ok(ms >= 35, `median TLS 1.2 handshake ${ms.toFixed(1)} ms without TCP_NODELAY`);
});
