/**
 * Protocol refusals, split by side: `RemoteRefusal` (the peer sent `error`, its text kept as data)
 * and `LocalRefusal` (this side refused, with a stable code); `PeerRefusedError` is the old name
 * of `RemoteRefusal`.
 */

import assert from "node:assert/strict";
import {
  Channel,
  defineProtocol,
  FramedStream,
  LocalRefusal,
  PeerRefusedError,
  ProtocolRefusal,
  RemoteRefusal,
} from "../../lib/wire/mod.ts";

const withError = defineProtocol("Refusals", {
  ask: { code: 0x01, label: "ask", fields: { what: "text" } },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});
const withoutError = defineProtocol("Mute", {
  ask: { code: 0x01, label: "ask", fields: { what: "text" } },
});

/** A connected pair of TCP streams on port 0. */
async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [server, client] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  ]);
  listener.close();
  return [server, client];
}

Deno.test("refusal: a local refusal reaches the peer as a remote refusal carrying its text", async () => {
  const [a, b] = await tcpPair();
  const server = new Channel(withError, new FramedStream(a));
  const client = new Channel(withError, new FramedStream(b));
  try {
    const refusal = new LocalRefusal("not-today", "Not today: \u001b[2J come back tomorrow");
    assert.equal(await server.refuse(refusal), refusal, "refuse returns the refusal");
    assert.ok(refusal instanceof ProtocolRefusal);
    assert.equal(refusal.code, "not-today");
    await assert.rejects(client.receive(["ask"]), (err) => {
      assert.ok(err instanceof RemoteRefusal);
      assert.ok(err instanceof ProtocolRefusal);
      assert.ok(!(err instanceof LocalRefusal));
      assert.equal(
        err.reason,
        "Not today: \u001b[2J come back tomorrow",
        "the peer's text, as data",
      );
      assert.equal(err.message, err.reason);
      return true;
    });
  } finally {
    server.close();
    client.close();
  }
});

Deno.test("refusal: PeerRefusedError is RemoteRefusal under its old name", () => {
  const err = new PeerRefusedError("No, thank you");
  assert.ok(err instanceof RemoteRefusal);
  assert.ok(new RemoteRefusal("x") instanceof PeerRefusedError);
  assert.equal(err.reason, "No, thank you");
  const wrapped = new PeerRefusedError(err.reason, { context: "Bob refused" });
  assert.equal(wrapped.message, "Bob refused: No, thank you");
  assert.equal(wrapped.reason, "No, thank you");
});

Deno.test("refusal: a protocol without an error message cannot refuse", async () => {
  const [a, b] = await tcpPair();
  const channel = new Channel(withoutError, new FramedStream(a));
  try {
    await assert.rejects(channel.refuse(new LocalRefusal("x", "y")), TypeError);
  } finally {
    channel.close();
    b.close();
  }
});
