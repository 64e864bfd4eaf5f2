/**
 * What a recording of the wire gives away, on real sockets through a recording TCP proxy: the
 * bytes of whole sessions, both directions, as a capture holds them.
 *
 * - Confidentiality: a default session's recording holds neither the step-6 message text nor any
 *   part of the uploaded report (AES-GCM records); MAC-only records (`--records hmac`) show both.
 * - Forward secrecy: with student.key and even Blackboard's own key in hand, no field of the
 *   recorded default handshake decrypts (no RSA-wrapped session key exists; the session key came
 *   from an ephemeral X25519 exchange). A seed-mode recording gives the session key to whoever
 *   steals student.key later.
 */

import assert from "node:assert/strict";
import { Buffer } from "node:buffer";
import {
  blackboardProtocol,
  openSeedSession,
  openSession,
  type RecordKind,
} from "../../lib/blackboard/mod.ts";
import {
  concatBytes,
  constantTimeEqual,
  randomBytes,
  rsaOaepDecrypt,
} from "../../lib/crypto/mod.ts";
import { privateKeyDer } from "../../lib/pki/mod.ts";
import { splitFrames } from "../../lib/wire/mod.ts";
import type { HostPort } from "../../lib/runtime/mod.ts";
import { memoryLog, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { identity, startBlackboard, type TestBlackboard } from "../_fixtures/blackboard.ts";

const SID = "1155000601";
const SECRET_TEXT = "my answer to question 3 is 42, do not tell anyone";

/** A TCP proxy that keeps every byte it forwards, per direction, like a capture of the port. */
function recordingProxy(upstream: HostPort) {
  const listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const toServer: Uint8Array[] = [];
  const toClient: Uint8Array[] = [];
  const pumps: Promise<void>[] = [];
  const pump = async (from: Deno.Conn, to: Deno.Conn, into: Uint8Array[]) => {
    const buf = new Uint8Array(64 * 1024);
    try {
      for (;;) {
        const n = await from.read(buf);
        if (n === null) break;
        const chunk = buf.slice(0, n);
        into.push(chunk);
        let off = 0;
        while (off < n) off += await to.write(chunk.subarray(off));
      }
    } catch {
      // One side went away: the other is closed below.
    }
    await to.closeWrite().catch(() => {});
  };
  const accepting = (async () => {
    for await (const client of listener) {
      const server = await Deno.connect(upstream);
      const both = Promise.all([
        pump(client, server, toServer),
        pump(server, client, toClient),
      ]).then(() => {
        client.close();
        server.close();
      });
      pumps.push(both);
    }
  })().catch(() => {});
  return {
    addr: { hostname: "127.0.0.1", port: (listener.addr as Deno.NetAddr).port },
    /** Waits until every relayed connection has ended, then returns the recording. */
    async finish(): Promise<{ toServer: Uint8Array; toClient: Uint8Array }> {
      await Promise.all(pumps);
      listener.close();
      await accepting;
      return { toServer: concatBytes(...toServer), toClient: concatBytes(...toClient) };
    },
  };
}

function contains(haystack: Uint8Array, needle: Uint8Array): boolean {
  return Buffer.from(haystack).indexOf(Buffer.from(needle)) >= 0;
}

/** A message and a 300 KiB report through the proxy, with `records`; returns the recording. */
async function recordSession(
  bb: TestBlackboard,
  home: string,
  dir: string,
  records: RecordKind,
): Promise<{ wire: Uint8Array; report: Uint8Array }> {
  const proxy = recordingProxy(bb.addr);
  const report = randomBytes(300 * 1024);
  const path = `${dir}/${records}-confidential-report.bin`;
  await Deno.writeFile(path, report);
  const { log } = memoryLog("student");
  {
    using session = await openSession({
      blackboard: proxy.addr,
      identity: await identity(home),
      log,
      records,
    });
    await session.send(SECRET_TEXT);
    const receipt = await session.upload(path, { stateDir: `${dir}/state-${records}` });
    assert.equal(receipt.size, report.length);
  }
  const { toServer, toClient } = await proxy.finish();
  return { wire: concatBytes(toServer, toClient), report };
}

Deno.test("a default session's recording holds neither the message text nor the report; MAC-only records show both", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  await using bb = await startBlackboard(pki, { records: "hmac" });
  await using dir = await tempDir();
  const text = new TextEncoder().encode(SECRET_TEXT);
  const name = new TextEncoder().encode("confidential-report.bin");
  // 48-byte samples of the report across its whole length, chunk boundaries included.
  const samples = (report: Uint8Array) =>
    [0, 1000, 128 * 1024 - 10, 256 * 1024 + 3, report.length - 48].map((o) =>
      report.subarray(o, o + 48)
    );

  const def = await recordSession(bb, student.home, dir.path, "aes-gcm");
  assert.ok(def.wire.length > def.report.length, "the whole session was recorded");
  assert.ok(!contains(def.wire, text), "the step-6 message text is on the wire");
  assert.ok(!contains(def.wire, name), "the report's name is on the wire");
  for (const sample of samples(def.report)) {
    assert.ok(!contains(def.wire, sample), "a part of the report is on the wire");
  }

  // The same check on MAC-only records finds all of it: the check can fail.
  const mac = await recordSession(bb, student.home, dir.path, "hmac");
  assert.ok(contains(mac.wire, text));
  assert.ok(contains(mac.wire, name));
  for (const sample of samples(mac.report)) assert.ok(contains(mac.wire, sample));

  assert.deepEqual(bb.printed.filter((l) => l.startsWith("Message")), [
    `Message from ${SID}: ${SECRET_TEXT}`,
    `Message from ${SID}: ${SECRET_TEXT}`,
  ]);
});

/** Every bytes field of every Blackboard message in a recording of one direction. */
function byteFields(wire: Uint8Array): Array<{ where: string; bytes: Uint8Array }> {
  const out: Array<{ where: string; bytes: Uint8Array }> = [];
  for (const frame of splitFrames(wire)) {
    const msg = blackboardProtocol.decode(frame);
    for (const [field, value] of Object.entries(msg)) {
      if (value instanceof Uint8Array) out.push({ where: `${msg.type}.${field}`, bytes: value });
    }
  }
  return out;
}

/** The fields that RSA-OAEP decryption with one of `keys` opens. */
async function decryptable(
  fields: Array<{ where: string; bytes: Uint8Array }>,
  keys: Uint8Array[],
): Promise<Array<{ where: string; plain: Uint8Array }>> {
  const out: Array<{ where: string; plain: Uint8Array }> = [];
  for (const { where, bytes } of fields) {
    for (const key of keys) {
      try {
        out.push({ where, plain: await rsaOaepDecrypt(key, bytes) });
      } catch {
        // Not RSA-OAEP under this key.
      }
    }
  }
  return out;
}

Deno.test("forward secrecy: student.key and Blackboard's key open nothing in a recorded default handshake; a seed recording yields the session key", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const stolen = [privateKeyDer(student.keyPem)];

  // Default: record a whole session.
  await using bb = await startBlackboard(pki);
  stolen.push(privateKeyDer(bb.keyPem));
  const proxy = recordingProxy(bb.addr);
  {
    const { log } = memoryLog("student");
    using session = await openSession({
      blackboard: proxy.addr,
      identity: await identity(student.home),
      log,
    });
    await session.send(SECRET_TEXT);
  }
  const rec = await proxy.finish();
  const fields = [...byteFields(rec.toServer), ...byteFields(rec.toClient)];
  // The handshake is all there: both shares, both certificates, the stapled CRL, both signatures.
  const where = fields.map((f) => f.where);
  for (
    const f of [
      "request.share",
      "request.certificate",
      "sessionKey.share",
      "sessionKey.certificate",
      "sessionKey.crl",
      "sessionKey.signature",
      "confirm.signature",
      "confirm.mac",
      "ready.mac",
    ]
  ) {
    assert.ok(where.includes(f), `${f} is in the recording`);
  }
  // The only fields the size of an RSA-2048 block are the two signatures: there is no wrapped key.
  assert.deepEqual(
    fields.filter((f) => f.bytes.length === 256).map((f) => f.where).sort(),
    ["confirm.signature", "sessionKey.signature"],
  );
  // And no field decrypts under either stolen key.
  assert.deepEqual(await decryptable(fields, stolen), []);
  assert.deepEqual(bb.printed, [`Message from ${SID}: ${SECRET_TEXT}`]);

  // Seed mode: the same theft opens step 4 and gives the session key (the one step 5 echoes).
  await using seedBb = await startBlackboard(pki, { protocol: "seed" });
  const seedProxy = recordingProxy(seedBb.addr);
  {
    const { log } = memoryLog("student");
    const session = await openSeedSession({
      blackboard: seedProxy.addr,
      identity: await identity(student.home),
      log,
    });
    await session.send(SECRET_TEXT);
    session.close();
  }
  const seedRec = await seedProxy.finish();
  const seedFields = [...byteFields(seedRec.toServer), ...byteFields(seedRec.toClient)];
  const opened = await decryptable(seedFields, stolen);
  assert.deepEqual(opened.map((o) => o.where), ["seedSessionKey.encryptedKey"]);
  const echo = seedFields.find((f) => f.where === "seedKeyEcho.sessionKey")!;
  assert.ok(constantTimeEqual(opened[0]!.plain, echo.bytes));
});
