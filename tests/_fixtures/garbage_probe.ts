/**
 * Probe for tests/runtime/garbage_test.ts: sends 96 MiB through `FramedStream` in 256 KiB frames
 * (written to a sink, and read back from a source that repeats one encoded frame), each frame
 * dropped at once, and prints how far its resident memory grew at most (read after every frame)
 * and how many collections `shortLivedBytes` asked for.
 */

import { encodeFrame, FramedStream } from "../../lib/wire/mod.ts";
import { shortLivedCollections } from "../../lib/runtime/mod.ts";

const FRAME = 256 * 1024;
const FRAMES = 384;

const encoded = encodeFrame(new Uint8Array(FRAME).fill(7), FRAME);
let at = 0;
const stream = new FramedStream({
  // An endless source of the same frame, handed out in 64 KiB reads as a socket would.
  read(p: Uint8Array): Promise<number> {
    const n = Math.min(p.length, encoded.length - at);
    p.set(encoded.subarray(at, at + n));
    at = (at + n) % encoded.length;
    return Promise.resolve(n);
  },
  write: (p: Uint8Array) => Promise.resolve(p.length),
  close() {},
}, { maxFrame: FRAME });

const before = Deno.memoryUsage().rss;
let peak = before;
for (let i = 0; i < FRAMES; i++) {
  const payload = await stream.readFrame();
  if (payload?.length !== FRAME || payload[FRAME - 1] !== 7) throw new Error(`frame ${i} wrong`);
  // What a record layer does with a chunk: a fresh copy of it, written as a new frame.
  await stream.writeFrame(payload.slice());
  peak = Math.max(peak, Deno.memoryUsage().rss);
}
console.log(JSON.stringify({
  grewMiB: (peak - before) / 2 ** 20,
  collections: shortLivedCollections(),
}));
