/**
 * The accept loop's two caps on their own (lib/net/server.ts): connections over the global cap, and
 * connections over the per-address cap, are closed at accept, and a place freed is given again.
 * Each test drives input that only that cap refuses (for `deno task mutate`).
 */

import assert from "node:assert/strict";
import { serve, type Server } from "../../lib/net/mod.ts";
import { memoryLog } from "../_fixtures/helpers.ts";

/** A server whose handler greets with one byte, then holds the connection until the peer leaves. */
function holdingServer(limits: { maxConnections: number; maxPerAddress: number }) {
  const { log, lines } = memoryLog("server");
  const server = serve({
    listener: Deno.listen({ hostname: "127.0.0.1", port: 0 }),
    log,
    graceMs: 0,
    ...limits,
    handler: async (conn) => {
      await conn.write(Uint8Array.of(0x2a));
      const buf = new Uint8Array(16);
      while ((await conn.read(buf).catch(() => null)) !== null) {
        // Held until the peer closes.
      }
    },
  });
  return { server, lines };
}

/** Connects and reports whether the server admitted the connection (greeted) or closed it. */
async function admitted(server: Server): Promise<{ conn: Deno.TcpConn; admitted: boolean }> {
  const conn = await Deno.connect({ hostname: "127.0.0.1", port: server.port });
  const buf = new Uint8Array(1);
  const n = await conn.read(buf).catch(() => null);
  return { conn, admitted: n === 1 && buf[0] === 0x2a };
}

Deno.test("accept loop: a connection over the global cap is closed at accept; a freed place is given again", async () => {
  const { server, lines } = holdingServer({ maxConnections: 2, maxPerAddress: 100 });
  await using _server = server;
  const a = await admitted(server);
  const b = await admitted(server);
  assert.deepEqual([a.admitted, b.admitted], [true, true]);
  const c = await admitted(server);
  assert.equal(c.admitted, false, "the third connection was served");
  c.conn.close();
  assert.ok(
    lines.some((l) =>
      /refused connection from 127\.0\.0\.1:\d+: 2 connections already open/.test(l)
    ),
  );
  a.conn.close();
  // The place a held is given to the next one once the server has seen it go.
  let d = await admitted(server);
  for (let i = 0; i < 50 && !d.admitted; i++) {
    d.conn.close();
    await new Promise((r) => setTimeout(r, 20));
    d = await admitted(server);
  }
  assert.ok(d.admitted, "no place was freed");
  b.conn.close();
  d.conn.close();
});

Deno.test("accept loop: one address over its cap is closed at accept, under a global cap it does not reach", async () => {
  const { server, lines } = holdingServer({ maxConnections: 100, maxPerAddress: 2 });
  await using _server = server;
  const held = [await admitted(server), await admitted(server)];
  assert.deepEqual(held.map((h) => h.admitted), [true, true]);
  const third = await admitted(server);
  assert.equal(third.admitted, false, "a third connection from one address was served");
  third.conn.close();
  assert.ok(
    lines.some((l) =>
      /refused connection from 127\.0\.0\.1:\d+: 2 connections from 127\.0\.0\.1 already open/.test(
        l,
      )
    ),
  );
  for (const h of held) h.conn.close();
});
