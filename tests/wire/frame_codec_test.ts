import assert from "node:assert/strict";
import {
  Channel,
  DeadlineError,
  defineProtocol,
  encodeFrame,
  FramedStream,
  FrameError,
  PeerRefusedError,
  splitFrames,
  UnexpectedMessageError,
} from "../../lib/wire/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";

/** A connected pair of TCP streams on port 0. */
async function tcpPair(): Promise<[Deno.TcpConn, Deno.TcpConn, () => void]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const [server, client] = await Promise.all([
    listener.accept(),
    Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port }),
  ]);
  listener.close();
  return [server, client, () => {
    for (const c of [server, client]) {
      try {
        c.close();
      } catch { /* closed */ }
    }
  }];
}

const testProtocol = defineProtocol("Test", {
  hello: { code: 0x01, label: "Hello", fields: { name: "text", n: "uint", blob: "bytes" } },
  empty: { code: 0x02, label: "Empty", fields: {} },
  error: { code: 0x7f, label: "error", fields: { reason: "text" } },
});

Deno.test("frames round-trip over a real socket, small and large", async () => {
  const [a, b, close] = await tcpPair();
  try {
    const fa = new FramedStream(a, { maxFrame: 1 << 20 });
    const fb = new FramedStream(b, { maxFrame: 1 << 20 });
    const big = randomBytes(700_000);
    const sent = [new Uint8Array(0), Uint8Array.of(1, 2, 3), big];
    await Promise.all([
      (async () => {
        for (const f of sent) await fb.writeFrame(f);
        fb.close();
      })(),
      (async () => {
        for (const f of sent) assert.deepEqual(await fa.readFrame(), f);
        assert.equal(await fa.readFrame(), null, "clean end of stream between frames");
      })(),
    ]);
  } finally {
    close();
  }
});

Deno.test("a small read buffer (the chat's 4 KiB) still reads frames of every size around it, written in one go", async () => {
  const [a, b, close] = await tcpPair();
  try {
    const fa = new FramedStream(a, { maxFrame: 1 << 20, readBufferBytes: 4096 });
    const fb = new FramedStream(b, { maxFrame: 1 << 20 });
    const sent = [1, 4091, 4092, 4095, 4096, 4097, 100_000, 3].map((n) => randomBytes(n));
    // All frames in one write: several end, and several start, inside one buffered read.
    await fb.writeFrames(sent);
    fb.close();
    for (const f of sent) assert.deepEqual(await fa.readFrame(), f);
    assert.equal(await fa.readFrame(), null);
  } finally {
    close();
  }
});

Deno.test("an oversized frame is refused from its header, before its payload arrives", async () => {
  const [a, b, close] = await tcpPair();
  try {
    const fa = new FramedStream(a, { maxFrame: 1024 });
    const header = new Uint8Array(4);
    new DataView(header.buffer).setUint32(0, 1025);
    await b.write(header); // no payload is ever sent: the refusal cannot depend on buffering it
    await assert.rejects(
      fa.readFrame(),
      (e) =>
        e instanceof FrameError && e.kind === "oversized" &&
        /1025 bytes exceeds the limit of 1024/.test(e.message),
    );
    assert.throws(() => encodeFrame(new Uint8Array(2048), 1024), RangeError);
  } finally {
    close();
  }
});

Deno.test("a frame cut short by the peer is reported as truncated", async () => {
  for (const bytes of [Uint8Array.of(0, 0), Uint8Array.of(0, 0, 0, 10, 1, 2, 3)]) {
    const [a, b, close] = await tcpPair();
    try {
      await b.write(bytes);
      b.close();
      await assert.rejects(
        new FramedStream(a).readFrame(),
        (e) => e instanceof FrameError && e.kind === "truncated" && /truncated/.test(e.message),
      );
    } finally {
      close();
    }
  }
});

Deno.test("a silent peer hits the read deadline and the connection is closed", async () => {
  const [a, _b, close] = await tcpPair();
  try {
    const fa = new FramedStream(a, { readTimeoutMs: 150 });
    await assert.rejects(fa.readFrame(), DeadlineError);
    assert.equal(fa.closed, true);
  } finally {
    close();
  }
});

Deno.test("messages round-trip and decode to their typed fields", () => {
  const bytes = testProtocol.encode("hello", {
    name: "Bob ☃",
    n: 2 ** 40,
    blob: Uint8Array.of(9, 8),
  });
  const msg = testProtocol.decode(bytes);
  assert.equal(msg.type, "hello");
  if (msg.type !== "hello") return;
  assert.equal(msg.name, "Bob ☃");
  assert.equal(msg.n, 2 ** 40);
  assert.deepEqual(msg.blob, Uint8Array.of(9, 8));
  assert.deepEqual(testProtocol.decode(testProtocol.encode("empty", {})), { type: "empty" });
});

Deno.test("every strict prefix of a valid message fails to decode, and so do trailing bytes", () => {
  const bytes = testProtocol.encode("hello", { name: "x", n: 7, blob: randomBytes(5) });
  for (let i = 0; i < bytes.length; i++) {
    assert.throws(() => testProtocol.decode(bytes.subarray(0, i)), FrameError, `prefix ${i}`);
  }
  const longer = new Uint8Array(bytes.length + 1);
  longer.set(bytes);
  assert.throws(() => testProtocol.decode(longer), /trailing bytes/);
});

Deno.test("unknown types, invalid UTF-8, huge integers and random bytes are refused", () => {
  assert.throws(() => testProtocol.decode(Uint8Array.of(0x42)), /Unknown Test message type 0x42/);
  // hello with name = [0xff] (not UTF-8)
  const bad = Uint8Array.of(0x01, 0, 0, 0, 1, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0);
  assert.throws(() => testProtocol.decode(bad), /Invalid UTF-8/);
  const huge = testProtocol.encode("hello", { name: "", n: 0, blob: new Uint8Array() });
  huge.fill(0xff, 5, 13);
  assert.throws(() => testProtocol.decode(huge), /Out of range/);
  for (let i = 0; i < 500; i++) {
    const junk = randomBytes(1 + (i % 40));
    try {
      const m = testProtocol.decode(junk);
      // Anything that decodes must re-encode to the same bytes: no lossy acceptance.
      const { type, ...fields } = m as unknown as { type: "hello" } & Record<string, never>;
      assert.deepEqual(testProtocol.encode(type, fields as never), junk);
    } catch (err) {
      assert.ok(err instanceof FrameError, String(err));
    }
  }
});

Deno.test("a channel names what it expected, and turns a peer's error into a refusal", async () => {
  const [a, b, close] = await tcpPair();
  try {
    const ca = new Channel(testProtocol, new FramedStream(a));
    const cb = new Channel(testProtocol, new FramedStream(b));
    await cb.send("empty", {});
    await assert.rejects(
      ca.receive(["hello"]),
      (e) => e instanceof UnexpectedMessageError && e.message === "Expected hello, got empty",
    );
    await cb.send("error", { reason: "No, thank you" });
    await assert.rejects(
      ca.receive(["hello"]),
      (e) => e instanceof PeerRefusedError && e.message === "No, thank you",
    );
    cb.close();
    await assert.rejects(ca.receive(["hello"]), /Connection closed while waiting for hello/);
  } finally {
    close();
  }
});

Deno.test("frames split from bytes in memory are the inverse of encodeFrame; a cut frame is left out", () => {
  const payloads = [Uint8Array.of(1), new Uint8Array(0), randomBytes(300)];
  const bytes = new Uint8Array(payloads.reduce((n, p) => n + 4 + p.length, 0));
  let off = 0;
  for (const p of payloads) {
    const f = encodeFrame(p);
    bytes.set(f, off);
    off += f.length;
  }
  assert.deepEqual(splitFrames(bytes), payloads);
  assert.deepEqual(splitFrames(bytes.subarray(0, bytes.length - 1)), payloads.slice(0, 2));
  assert.deepEqual(splitFrames(bytes.subarray(0, 3)), []);
});
