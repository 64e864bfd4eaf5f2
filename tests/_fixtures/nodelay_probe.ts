/**
 * Run with --allow-net --allow-ffi: opens a TCP listener on 127.0.0.1 with one connection already
 * accepted (it shares the listener's address: only SO_ACCEPTCONN tells them apart), sets
 * TCP_NODELAY on the listener (lib/net/nodelay.ts), accepts a second connection, and prints as
 * JSON the outcome and TCP_NODELAY (read back through libc) of both accepted sockets.
 */

import { noDelayOnAccepted } from "../../lib/net/mod.ts";

const libc = Deno.dlopen(
  "libc.so.6",
  {
    getpeername: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
    getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  } as const,
);

/** TCP_NODELAY of the accepted socket whose peer is on `peerPort`. */
function noDelayOf(peerPort: number): number | undefined {
  for (let fd = 0; fd < 4096; fd++) {
    const addr = new Uint8Array(128);
    const len = new Uint32Array([128]);
    if (libc.symbols.getpeername(fd, addr, new Uint8Array(len.buffer)) !== 0) continue;
    // The accepted side's peer is the client (the client's own socket has the listener as peer).
    if (new DataView(addr.buffer).getUint16(2) !== peerPort) continue;
    const value = new Int32Array(1);
    libc.symbols.getsockopt(
      fd,
      6,
      1,
      new Uint8Array(value.buffer),
      new Uint8Array(new Uint32Array([4]).buffer),
    );
    return value[0];
  }
  return undefined;
}

const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
const accepting = listener.accept();
const before = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
const acceptedBefore = await accepting;
const outcome = noDelayOnAccepted(listener);
const accepting2 = listener.accept();
const after = await Deno.connect({ hostname: "127.0.0.1", port: listener.addr.port });
const acceptedAfter = await accepting2;
console.log(JSON.stringify({
  outcome,
  before: noDelayOf(before.localAddr.port),
  after: noDelayOf(after.localAddr.port),
}));
for (const c of [before, acceptedBefore, after, acceptedAfter]) c.close();
listener.close();
libc.close();
