/**
 * FrameError's `kind`: code branches on it (oversized, truncated, malformed, closed), never on the
 * message's wording.
 */

import assert from "node:assert/strict";
import {
  type ByteStream,
  Channel,
  defineProtocol,
  FramedStream,
  FrameError,
  type FrameErrorKind,
  UnexpectedMessageError,
} from "../../lib/wire/mod.ts";

/** A byte stream that hands out `bytes` and then ends (a peer that wrote them and closed). */
function fromBytes(bytes: Uint8Array): ByteStream {
  let off = 0;
  return {
    read(p) {
      if (off >= bytes.length) return Promise.resolve(null);
      const n = Math.min(p.length, bytes.length - off);
      p.set(bytes.subarray(off, off + n));
      off += n;
      return Promise.resolve(n);
    },
    write: (p) => Promise.resolve(p.length),
    close() {},
  };
}

function kindOf(err: unknown): FrameErrorKind | undefined {
  return err instanceof FrameError ? err.kind : undefined;
}

const protocol = defineProtocol("Kinds", {
  hello: { code: 0x01, label: "Hello", fields: { name: "text", n: "uint" } },
  empty: { code: 0x02, label: "Empty", fields: {} },
});

Deno.test("frame kind: a length prefix above the limit is oversized", async () => {
  const stream = new FramedStream(fromBytes(Uint8Array.of(0, 0, 4, 1)), { maxFrame: 1024 });
  await assert.rejects(stream.readFrame(), (e) => kindOf(e) === "oversized");
  const tighter = new FramedStream(fromBytes(Uint8Array.of(0, 0, 0, 9, ...new Uint8Array(9))));
  await assert.rejects(tighter.readFrame({ maxFrame: 8 }), (e) => kindOf(e) === "oversized");
});

Deno.test("frame kind: a stream that ends inside the header or the payload is truncated", async () => {
  for (const bytes of [Uint8Array.of(0), Uint8Array.of(0, 0, 0), Uint8Array.of(0, 0, 0, 5, 1, 2)]) {
    const stream = new FramedStream(fromBytes(bytes));
    await assert.rejects(stream.readFrame(), (e) => kindOf(e) === "truncated", `${bytes}`);
  }
});

Deno.test("frame kind: a field cut short inside a complete frame is truncated", () => {
  const bytes = protocol.encode("hello", { name: "abc", n: 1 });
  for (const cut of [2, 6, 10]) {
    assert.throws(() => protocol.decode(bytes.subarray(0, cut)), (e) => kindOf(e) === "truncated");
  }
});

Deno.test("frame kind: undecodable payloads are malformed", () => {
  const invalidUtf8 = Uint8Array.of(0x01, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0);
  const outOfRange = protocol.encode("hello", { name: "", n: 0 });
  outOfRange.fill(0xff, 5, 13);
  const trailing = Uint8Array.of(...protocol.encode("empty", {}), 0);
  for (
    const [what, bytes] of [
      ["empty message", new Uint8Array()],
      ["unknown type", Uint8Array.of(0x42)],
      ["invalid UTF-8", invalidUtf8],
      ["integer out of range", outOfRange],
      ["trailing bytes", trailing],
    ] as const
  ) {
    assert.throws(() => protocol.decode(bytes), (e) => kindOf(e) === "malformed", what);
  }
});

Deno.test("frame kind: an unexpected message on a channel is malformed", async () => {
  const frame = Uint8Array.of(0, 0, 0, 1, 0x02);
  const channel = new Channel(protocol, new FramedStream(fromBytes(frame)));
  await assert.rejects(
    channel.receive(["hello"]),
    (e) => e instanceof UnexpectedMessageError && kindOf(e) === "malformed",
  );
});

Deno.test("frame kind: a clean close where a message was due, or a read after close, is closed", async () => {
  const channel = new Channel(protocol, new FramedStream(fromBytes(new Uint8Array())));
  await assert.rejects(
    channel.receive(["hello"]),
    (e) => kindOf(e) === "closed" && /waiting for hello/.test((e as Error).message),
  );
  const stream = new FramedStream(fromBytes(new Uint8Array()));
  assert.equal(await stream.readFrame(), null, "a clean end between frames is no error");
  stream.close();
  await assert.rejects(stream.readFrame(), (e) => kindOf(e) === "closed");
  await assert.rejects(stream.writeFrame(Uint8Array.of(1)), (e) => kindOf(e) === "closed");
});

Deno.test("frame kind: subclasses default to malformed", () => {
  assert.equal(new UnexpectedMessageError("x").kind, "malformed");
  assert.equal(new FrameError("x").kind, "malformed");
  assert.equal(new FrameError("x", "closed").kind, "closed");
});
