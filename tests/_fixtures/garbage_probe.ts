/**
 * Probe for tests/runtime/garbage_test.ts: sends 96 MiB through `FramedStream` in frames of 256
 * KiB (or the size it is given), read from a source that repeats one encoded frame and written to
 * a sink, each dropped at once; prints how far its resident memory grew at most (read after every
 * frame) and how many collections `shortLivedBytes` asked for.
 */

import { encodeFrame, FramedStream } from "../../lib/wire/mod.ts";
import { shortLivedCollections } from "../../lib/runtime/mod.ts";

/** The frame's size: 256 KiB unless given; 96 MiB of frames in all. */
const FRAME = Number(Deno.args[0] ?? 256 * 1024);
const FRAMES = (96 * 1024 * 1024) / FRAME;

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
