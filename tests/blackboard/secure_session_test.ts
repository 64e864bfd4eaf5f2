/**
 * Step 6's session over a real socket (lib/blackboard/protocol.ts `SecureSession`): sends that
 * are not awaited leave in order (records are sealed concurrently, small ones synchronously and
 * large ones on WebCrypto's thread pool, and a record overtaking another would be refused by its
 * sequence number), and a frame read ahead after a large record is not believed until it is opened.
 */

import assert from "node:assert/strict";
import {
  blackboardProtocol,
  CleartextFrameError,
  RecordLayer,
  SecureSession,
  SESSION_MAX_FRAME,
  trafficKeys,
} from "../../lib/blackboard/mod.ts";
import { randomBytes } from "../../lib/crypto/mod.ts";
import { FramedStream } from "../../lib/wire/mod.ts";

async function sessionPair(): Promise<[SecureSession, SecureSession, () => void]> {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const accepted = listener.accept();
  const client = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
  const server = await accepted;
  listener.close();
  const key = randomBytes(32);
  const th = randomBytes(32);
  const make = async (conn: Deno.Conn, role: "student" | "blackboard") =>
    new SecureSession(
      new FramedStream(conn, { maxFrame: SESSION_MAX_FRAME, readTimeoutMs: 10_000 }),
      new RecordLayer(await trafficKeys(key, th, role, true), role, true),
    );
  const student = await make(client, "student");
  const board = await make(server, "blackboard");
  return [student, board, () => {
    student.close();
    board.close();
  }];
}

Deno.test("session: 40 sends not awaited, large and small mixed, arrive whole and in order", async () => {
  const [student, board, close] = await sessionPair();
  try {
    const sizes = Array.from({ length: 40 }, (_, i) => i % 3 === 0 ? 256 * 1024 : 1 + i * 7);
    const chunks = sizes.map((n) => randomBytes(n));
    const buf = new Uint8Array(256 * 1024);
    const sends = chunks.map((data, i) => {
      // One buffer reused for every chunk, as the upload does: send copies it before returning.
      buf.set(data);
      const sent = student.send("chunk", { offset: i, data: buf.subarray(0, data.length) });
      buf.fill(0xee);
      return sent;
    });
    for (let i = 0; i < chunks.length; i++) {
      const msg = await board.next();
      assert.ok(msg?.type === "chunk", `message ${i}: ${msg?.type}`);
      assert.equal(msg.offset, i);
      assert.deepEqual(msg.data, chunks[i], `chunk ${i} (${sizes[i]} bytes)`);
    }
    await Promise.all(sends);
  } finally {
    close();
  }
});

Deno.test("session: the frame read ahead after a large record is still refused when it is not a record", async () => {
  const [student, board, close] = await sessionPair();
  try {
    await student.send("chunk", { offset: 0, data: randomBytes(200 * 1024) });
    // Trudy's cleartext error, right behind the chunk on the same connection.
    await student.stream.writeFrame(blackboardProtocol.encode("error", { reason: "forged" }));
    const first = await board.next();
    assert.equal(first?.type, "chunk");
    await assert.rejects(() => board.next(), CleartextFrameError);
  } finally {
    close();
  }
});

Deno.test("session: a large record that is refused ends the session, and the frame read ahead after it is not waited for", async () => {
  const [student, board, close] = await sessionPair();
  try {
    await student.send("chunk", { offset: 0, data: randomBytes(200 * 1024) });
    // 100 KiB that are no record at all, then nothing more: the read ahead would wait.
    await student.stream.writeFrame(randomBytes(100 * 1024));
    assert.equal((await board.next())?.type, "chunk");
    await assert.rejects(() => board.next());
    assert.equal(board.stream.closed, true, "closed, not left reading ahead");
  } finally {
    close();
  }
});
