/**
 * TCP_NODELAY for every connection a Deno listener accepts, where Deno offers no way to set it.
 *
 * Why: a `Deno.TlsConn` (from `Deno.listenTls`) has no `setNoDelay` (Deno 2.9), and rustls writes
 * a TLS 1.2 server's Change Cipher Spec and Finished with two writes. With Nagle's algorithm on,
 * the kernel holds the Finished until the client acknowledges the Change Cipher Spec, and the
 * client delays that acknowledgement (delayed ACK, 40 ms on Linux): every TLS 1.2 handshake waits
 * 40 ms for nothing (22 handshakes per second instead of 500).
 *
 * How: Linux copies TCP_NODELAY from a listening socket to each socket it accepts. Deno does not
 * expose the listener's socket, so this finds it through libc with Deno's FFI (the one listening
 * TCP socket bound to the listener's address and port, by `getsockname` and `SO_ACCEPTCONN`) and
 * sets TCP_NODELAY on it with `setsockopt`, then closes the library. It needs `--allow-ffi`; the
 * chat actor uses it once at start and revokes the permission before it serves anyone. Without
 * the permission, or on another system, nothing changes and the outcome says why.
 */

/** Whether the listener's connections get TCP_NODELAY, and if not, why. */
export type NoDelayOutcome = { set: true; fd: number } | { set: false; reason: string };

// Linux's values (x86_64 and aarch64 alike).
const SOL_SOCKET = 1;
const SO_ACCEPTCONN = 30;
const IPPROTO_TCP = 6;
const TCP_NODELAY = 1;
const AF_INET = 2;
const AF_INET6 = 10;
/** Every descriptor below this is looked at; the listener was just opened, so it is near 0. */
const MAX_FD = 65_536;

const SYMBOLS = {
  getsockname: { parameters: ["i32", "buffer", "buffer"], result: "i32" },
  getsockopt: { parameters: ["i32", "i32", "i32", "buffer", "buffer"], result: "i32" },
  setsockopt: { parameters: ["i32", "i32", "i32", "buffer", "u32"], result: "i32" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** `[::1]` and `::1`, `0:0:…:1` alike: the canonical form of an address, for comparison. */
function canonical(host: string): string {
  const bare = host.replace(/^\[(.*)\]$/, "$1");
  if (!bare.includes(":")) return bare;
  try {
    return new URL(`http://[${bare}]/`).hostname;
  } catch {
    return bare;
  }
}

/** The address and port a socket is bound to, or undefined if `fd` is no IPv4/IPv6 socket. */
function boundTo(libc: Libc, fd: number): { host: string; port: number } | undefined {
  const addr = new Uint8Array(128);
  const len = new Uint32Array([addr.length]);
  if (libc.getsockname(fd, addr, new Uint8Array(len.buffer)) !== 0) return undefined;
  const family = new Uint16Array(addr.buffer, 0, 1)[0]; // sa_family_t, host byte order
  const view = new DataView(addr.buffer);
  const port = view.getUint16(2); // network byte order
  if (family === AF_INET) return { host: addr.subarray(4, 8).join("."), port };
  if (family === AF_INET6) {
    const groups = Array.from({ length: 8 }, (_, i) => view.getUint16(8 + 2 * i).toString(16));
    return { host: canonical(groups.join(":")), port };
  }
  return undefined;
}

function intOption(libc: Libc, fd: number, level: number, name: number): number | undefined {
  const value = new Int32Array(1);
  const len = new Uint32Array([4]);
  const ok = libc.getsockopt(
    fd,
    level,
    name,
    new Uint8Array(value.buffer),
    new Uint8Array(len.buffer),
  );
  return ok === 0 ? value[0] : undefined;
}

/**
 * Sets TCP_NODELAY on `listener`'s socket, so that every connection it accepts from now on has
 * Nagle's algorithm off. Call it right after opening the listener. Never throws.
 */
export function noDelayOnAccepted(listener: Deno.Listener): NoDelayOutcome {
  const addr = listener.addr;
  if (addr.transport !== "tcp") return { set: false, reason: `a ${addr.transport} listener` };
  if (Deno.build.os !== "linux") {
    return { set: false, reason: `not supported on ${Deno.build.os} (Linux only)` };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return { set: false, reason: "no --allow-ffi" };
  }
  let lib: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS);
  } catch (err) {
    return { set: false, reason: `libc.so.6: ${err instanceof Error ? err.message : err}` };
  }
  try {
    const libc = lib.symbols;
    const host = canonical(addr.hostname);
    for (let fd = 0; fd < MAX_FD; fd++) {
      const bound = boundTo(libc, fd);
      if (bound === undefined || bound.port !== addr.port || bound.host !== host) continue;
      // A connection accepted earlier shares the address: only the listening socket will do.
      if (intOption(libc, fd, SOL_SOCKET, SO_ACCEPTCONN) !== 1) continue;
      const one = new Int32Array([1]);
      if (libc.setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, new Uint8Array(one.buffer), 4) !== 0) {
        return { set: false, reason: `setsockopt(TCP_NODELAY) failed on descriptor ${fd}` };
      }
      return intOption(libc, fd, IPPROTO_TCP, TCP_NODELAY) === 1
        ? { set: true, fd }
        : { set: false, reason: `TCP_NODELAY did not stick on descriptor ${fd}` };
    }
    return { set: false, reason: `no listening socket bound to ${addr.hostname}:${addr.port}` };
  } finally {
    lib.close();
  }
}
