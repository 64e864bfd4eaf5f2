/**
 * The actors as real processes, as the README runs them: CA, Blackboard and student, from
 * enrolment to a message and an upload, in both protocols.
 */

import assert from "node:assert/strict";
import { ActorProcess, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { fileSha256, writeTestFile } from "../_fixtures/blackboard.ts";
import { exists, waitFor } from "../../lib/runtime/mod.ts";

const SID = "1155000401";

Deno.test("blackboard CLI: enrol, send, upload, seed mode, bad arguments", async () => {
  await using dir = await tempDir("lab-bb-cli-");
  const cwd = dir.path;
  const ok = async (script: string, args: string[]) => {
    const r = await runActor(script, args, { cwd });
    assert.equal(r.code, 0, `${script} ${args.join(" ")}: ${r.stderr}`);
    return r;
  };

  // Only 'ca init' or 'ca serve' make a CA; 'ca issue' needs one.
  await ok("actors/ca.ts", ["init"]);
  await ok("actors/ca.ts", [
    "issue",
    "--server",
    "blackboard",
    "--ip",
    "127.0.0.1",
    "--out",
    "data/blackboard",
  ]);
  await using ca = new ActorProcess("actors/ca.ts", ["serve", "--port", "0"], { cwd });
  const caPort = (await ca.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!;
  const code = (await ok("actors/ca.ts", ["code", "--sid", SID])).stdout.trim();
  await ok("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--code",
    code,
    "--ca",
    `127.0.0.1:${caPort}`,
  ]);

  // An upload abandoned two days ago: the start-up sweep removes it before Blackboard listens.
  const abandoned = `${cwd}/data/blackboard/partial/${SID}/${"ab".repeat(16)}`;
  await Deno.mkdir(`${cwd}/data/blackboard/partial/${SID}`, { recursive: true });
  await Deno.writeFile(`${abandoned}.part`, new Uint8Array(1234));
  await Deno.writeTextFile(`${abandoned}.json`, "{}");
  const twoDaysAgo = new Date(Date.now() - 48 * 3600_000);
  for (const f of [`${abandoned}.part`, `${abandoned}.json`]) {
    await Deno.utime(f, twoDaysAgo, twoDaysAgo);
  }
  await using bb = new ActorProcess("actors/blackboard.ts", [
    "serve",
    "--port",
    "0",
    "--ca",
    `127.0.0.1:${caPort}`,
  ], { cwd });
  const bbAddr = `127.0.0.1:${(await bb.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!}`;
  assert.match(bb.stderr, /removed 1 unfinished upload\(s\) untouched for 24 h \(1\.2 KiB\)/);
  assert.equal(await exists(`${cwd}/data/blackboard/partial/${SID}`), false);

  const sent = await ok("actors/student.ts", [
    "send",
    "--sid",
    SID,
    "--message",
    "Hello from the CLI",
    "--blackboard",
    bbAddr,
  ]);
  assert.match(sent.stdout, new RegExp(`SID: ${SID} sent 1 message\\(s\\) to Blackboard\\.`));
  for (const step of [3, 4, 5, 6]) assert.match(sent.stderr, new RegExp(`STEP ${step} `));
  await bb.waitFor(new RegExp(`Message from ${SID}: Hello from the CLI`));

  await writeTestFile(`${cwd}/data/report.bin`, 3 * 1024 * 1024 + 17);
  const up = await ok("actors/student.ts", [
    "upload",
    "--sid",
    SID,
    "--file",
    "data/report.bin",
    "--blackboard",
    bbAddr,
    "--encrypt",
  ]);
  const digest = await fileSha256(`${cwd}/data/report.bin`);
  assert.match(
    up.stdout,
    new RegExp(`Receipt: stored as reports/${SID}/report\\.bin, 3145745 bytes, SHA-256 ${digest}`),
  );
  assert.match(up.stderr, /upload: 100%/);
  // --encrypt is what the default does now: a deprecation line, nothing else.
  assert.match(
    up.stderr,
    /^student: --encrypt is deprecated and does nothing: AES-GCM records are the default$/m,
  );
  assert.match(
    up.stderr,
    /STEP 5 key confirmation accepted: start to communicate \(AES-GCM records/,
  );
  assert.equal(await fileSha256(`${cwd}/data/blackboard/reports/${SID}/report.bin`), digest);
  for (const step of [3, 4, 5, 6]) {
    assert.match(bb.stderr, new RegExp(`\\[Blackboard #\\d+\\] STEP ${step} `));
  }

  // Bad input: one line and exit status 2, nothing sent.
  const bad = await runActor("actors/student.ts", ["send", "--sid", "123", "--message", "x"], {
    cwd,
  });
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^student send: --sid must be exactly 10 digits, got '123'\n/);
  const badRecords = await runActor(
    "actors/student.ts",
    ["send", "--sid", SID, "--message", "x", "--records", "rot13"],
    { cwd },
  );
  assert.equal(badRecords.code, 2);
  assert.match(
    badRecords.stderr,
    /^student send: --records must be aes-gcm or hmac, got 'rot13'\n/,
  );
  const badQuota = await runActor(
    "actors/blackboard.ts",
    ["serve", "--port", "0", "--max-report", "10", "--partial-quota", "5"],
    { cwd },
  );
  assert.equal(badQuota.code, 2);
  assert.match(
    badQuota.stderr,
    /^blackboard serve: --partial-quota \(5 MiB\) must be at least --max-report \(10 MiB\)\n/,
  );
  // MAC-only records: refused by the default Blackboard, in its words.
  const macOnly = await runActor("actors/student.ts", [
    "send",
    "--sid",
    SID,
    "--message",
    "readable",
    "--records",
    "hmac",
    "--blackboard",
    bbAddr,
  ], { cwd });
  assert.equal(macOnly.code, 1);
  assert.match(macOnly.stderr, /Blackboard requires AES-GCM records/);
  const noFile = await runActor("actors/student.ts", ["upload", "--sid", SID, "--file", "nope"], {
    cwd,
  });
  assert.equal(noFile.code, 1);
  assert.match(noFile.stderr, /Cannot read nope/);

  // Seed mode on both sides: it works, and says loudly what it gives away.
  // Its own data directory: the default Blackboard above still owns data/blackboard.
  await using seed = new ActorProcess("actors/blackboard.ts", [
    "serve",
    "--port",
    "0",
    "--ca",
    `127.0.0.1:${caPort}`,
    "--protocol",
    "seed",
    "--data-dir",
    "data/blackboard-seed",
    "--cert",
    "data/blackboard/blackboard.cer",
    "--key",
    "data/blackboard/blackboard.key",
  ], { cwd });
  const seedAddr = `127.0.0.1:${(await seed.waitFor(/listening on 127\.0\.0\.1:(\d+)/))[1]!}`;
  assert.match(seed.stderr, /SEED PROTOCOL: students send the session key back IN THE CLEAR/);
  const seedSent = await ok("actors/student.ts", [
    "send",
    "--sid",
    SID,
    "--message",
    "seed hello",
    "--protocol",
    "seed",
    "--blackboard",
    seedAddr,
  ]);
  assert.match(seedSent.stderr, /IN THE CLEAR/);
  await seed.waitFor(new RegExp(`Message from ${SID}: seed hello`));

  for (const p of [seed, bb, ca]) assert.equal((await p.stop()).code, 0);
});

Deno.test("student: a truncated student.key, or another student's key, is one clear error at load; nothing is sent", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student(SID);
  const other = await pki.student("1155000402");
  // Where the student would connect: counts connections, so "nothing sent" is checked.
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  let connections = 0;
  (async () => {
    for await (const conn of listener) {
      connections++;
      conn.close();
    }
  })().catch(() => {});
  const keyPath = `${student.home}/student.key`;
  const send = () =>
    runActor("actors/student.ts", [
      "send",
      "--sid",
      SID,
      "--home",
      student.home,
      "--message",
      "hello",
      "--blackboard",
      `127.0.0.1:${listener.addr.port}`,
    ]);
  // Truncated in the middle (the file keeps its mode 0600).
  const pem = await Deno.readTextFile(keyPath);
  await Deno.truncate(keyPath, Math.floor(pem.length / 2));
  const truncated = await send();
  assert.equal(truncated.code, 1, truncated.stderr);
  assert.match(
    truncated.stderr,
    /^student: The private key \S+student\.key cannot be read \(truncated or damaged\? /,
  );
  assert.doesNotMatch(truncated.stderr, /STEP 3/);
  // Another student's key: it parses, but it is not the key of this certificate.
  await Deno.writeTextFile(keyPath, other.keyPem);
  const wrong = await send();
  assert.equal(wrong.code, 1, wrong.stderr);
  assert.match(
    wrong.stderr,
    /^student: The private key \S+student\.key is not the key of the certificate \S+student\.cer/,
  );
  assert.doesNotMatch(wrong.stderr, /STEP 3/);
  assert.equal(connections, 0, "nothing was sent");
  // The right key again: the check passes and the student connects.
  await Deno.writeTextFile(keyPath, pem);
  await send();
  await waitFor(() => connections === 1, { what: "the student's connection", timeoutMs: 5000 });
});
