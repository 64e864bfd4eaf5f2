/**
 * `receiveExpected` (lib/wire/codec.ts), what the handshakes of Blackboard and the bank read with:
 * the message expected comes back with its exact bytes; the peer's `error` becomes a
 * `RemoteRefusal` with its text; anything else, or the end of the stream, is refused by kind.
 */

import assert from "node:assert/strict";
import {
  defineProtocol,
  FramedStream,
  FrameError,
  receiveExpected,
  RemoteRefusal,
  UnexpectedMessageError,
} from "../../lib/wire/mod.ts";

const proto = defineProtocol("Expect", {
  hello: { code: 0x01, label: "hello", fields: { n: "uint" } },
  other: { code: 0x02, label: "other", fields: {} },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

/** A connected pair of framed TCP streams on port 0. */
async function pair(): Promise<[FramedStream, FramedStream]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [a, b] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  ]);
  listener.close();
  return [new FramedStream(a), new FramedStream(b)];
}

Deno.test("receiveExpected: the expected message with its bytes; the peer's error, another message, the end", async () => {
  const [a, b] = await pair();
  try {
    const hello = proto.encode("hello", { n: 7 });
    await a.writeFrame(hello);
    const got = await receiveExpected(b, proto, ["hello"]);
    assert.equal(got.msg.n, 7);
    assert.deepEqual(got.bytes, hello);

    await a.writeFrame(proto.encode("error", { reason: "No: \u001b[2J" }));
    await assert.rejects(receiveExpected(b, proto, ["hello"]), (err: unknown) => {
      assert.ok(err instanceof RemoteRefusal, String(err));
      assert.equal(err.reason, "No: \u001b[2J");
      return true;
    });

    await a.writeFrame(proto.encode("other", {}));
    await assert.rejects(receiveExpected(b, proto, ["hello"]), (err: unknown) => {
      assert.ok(err instanceof UnexpectedMessageError, String(err));
      assert.equal(err.message, "Expected hello, got other");
      return true;
    });

    a.close();
    await assert.rejects(receiveExpected(b, proto, ["hello"]), (err: unknown) => {
      assert.ok(err instanceof FrameError && err.kind === "closed", String(err));
      assert.equal(err.message, "Connection closed while waiting for hello");
      return true;
    });
  } finally {
    a.close();
    b.close();
  }
});
