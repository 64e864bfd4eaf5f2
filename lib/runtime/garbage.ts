/**
 * Short-lived buffers returned to the allocator soon after they die, not 64 MiB later.
 *
 * The bytes of an `ArrayBuffer` live outside V8's heap, and are freed only when V8 collects the
 * small object that holds them. V8 collects the young generation when it is full of objects, not
 * of bytes: an upload allocates a few copies of each 256 KiB chunk (the frame, the record, the
 * plaintext) and hardly any objects, so the dead chunks piled up until V8's own limit on memory
 * outside its heap (64 MiB beyond the last collection) started one. `bench:upload --size-mib 256`
 * showed it: collections for "external memory pressure" every 8 MiB or so uploaded, and both
 * processes peaking at 150–160 MiB resident, against 77–82 MiB after a 1 MiB upload.
 *
 * `shortLivedBytes(n)` counts the bytes of large such buffers; every `COLLECT_EVERY` bytes it asks
 * V8 for a young-generation collection (a scavenge: it visits only the live young objects, and
 * frees the dead ones' buffers). The frame layer (`FramedStream`, lib/wire/frame.ts) reports every
 * frame it reads or writes, and the large ones count (`LARGE_BUFFER`). Measured with `bench:upload --size-mib 256` (28 Nov 2026), old and new code
 * alternating: before, student 153–157 MiB and Blackboard 157–169 MiB at 80–95 MiB/s; with a
 * collection every 1 MiB, 88–90 and 87–88 MiB at 97–119 MiB/s (fewer fresh pages to fault in).
 * Every 2 MiB gave 92–97 MiB; every 512 KiB was worse for the student (110–113 MiB): its four
 * chunks in flight then outlive two collections, which moves them to the old generation, collected
 * far more rarely.
 *
 * V8 offers the call only with `--expose-gc`, which `V8_MEMORY_FLAG` (process.ts) sets for every
 * actor the launcher or `spawnDeno` starts. Without it (`deno run actors/…` typed by hand) this
 * counts and does nothing else: memory as before, nothing lost.
 */

/** How many bytes of short-lived buffers between two young-generation collections. */
export const COLLECT_EVERY = 1024 * 1024;

/**
 * Buffers smaller than this are not counted: every control frame (16 KiB at most: the CA's, the
 * bank's, Blackboard's handshake, a chat client's), so only upload chunks and large writes count. A
 * small buffer's holder objects on V8's heap weigh as much as its bytes, so the young generation
 * fills, and is collected, at the pace its bytes die. Counting them too would also collect for the
 * chat's small frames, and a collection promotes what is live at that moment (a thousand members'
 * writes in flight) to the old generation: with every frame counted, `bench:chat --clients 1000
 * --messages 100` peaked at 152–154 MiB against 137–144.
 */
export const LARGE_BUFFER = 32 * 1024;

type Collect = (options: { type: "minor" | "major" }) => void;

/** V8's `gc()`, when the process was started with `--expose-gc` (fixed for its lifetime). */
const exposed = (globalThis as { gc?: unknown }).gc;
const collect = typeof exposed === "function" ? exposed as Collect : undefined;

let pending = 0;
let collections = 0;

/**
 * Reports a buffer of `bytes` that dies soon (a frame read or written). Every `COLLECT_EVERY` bytes
 * of such buffers of `LARGE_BUFFER` bytes or more, a young-generation collection frees the dead
 * ones, when V8 offers it.
 */
export function shortLivedBytes(bytes: number): void {
  if (bytes < LARGE_BUFFER) return;
  pending += bytes;
  if (pending < COLLECT_EVERY) return;
  pending = 0;
  if (!collect) return;
  collect({ type: "minor" });
  collections++;
}

/** How many collections `shortLivedBytes` has asked for in this process (for tests). */
export function shortLivedCollections(): number {
  return collections;
}
