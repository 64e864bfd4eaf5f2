/**
 * The CA and student as real processes, and interop with independent peers: a certificate issued
 * for an `openssl req` CSR passes `openssl verify -x509_strict` and GnuTLS `certtool --verify`, and
 * after `ca revoke`, `openssl verify -crl_check` with the CA's CRL refuses it.
 */

import assert from "node:assert/strict";
import { ActorProcess, run, runActor, tempDir, TestPki } from "../_fixtures/helpers.ts";
import { exists } from "../../lib/runtime/mod.ts";

const SID = "1155000042";

async function startCa(
  dataDir: string,
  extra: string[] = [],
): Promise<{ proc: ActorProcess; addr: string }> {
  const proc = new ActorProcess("actors/ca.ts", [
    "serve",
    "--port",
    "0",
    "--data-dir",
    dataDir,
    ...extra,
  ]);
  const m = await proc.waitFor(/listening on (127\.0\.0\.1:\d+)/);
  return { proc, addr: m[1]! };
}

Deno.test("ca and student: --help, usage errors, and a bad ID sends nothing", async () => {
  for (
    const [script, args] of [["actors/ca.ts", ["--help"]], ["actors/ca.ts", ["serve", "--help"]], [
      "actors/student.ts",
      ["enroll", "--help"],
    ]] as const
  ) {
    const r = await runActor(script, [...args]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /Usage: deno task/);
  }
  const unknown = await runActor("actors/ca.ts", ["serve", "--bogus"]);
  assert.equal(unknown.code, 2);
  assert.match(unknown.stderr, /^ca serve: unknown option '--bogus'\nTry 'ca serve --help'/);
  const noCommand = await runActor("actors/ca.ts", ["frobnicate"]);
  assert.equal(noCommand.code, 2);
  assert.match(noCommand.stderr, /unknown command 'frobnicate'/);

  await using pki = await TestPki.start();
  for (const sid of ["115500004", "11550000421", "11550000a4", ""]) {
    const r = await runActor("actors/student.ts", [
      "enroll",
      "--sid",
      sid,
      "--code",
      "x",
      "--ca",
      pki.caAddr,
      "--ca-cert",
      pki.rootPath,
      "--home",
      `${pki.dir}/home-${sid}`,
    ]);
    assert.equal(r.code, 2, r.stderr);
    assert.equal(r.stderr.split("\n").filter(Boolean).length, 2, "one line and a hint");
    assert.match(r.stderr, /--sid must be exactly 10 digits|missing required option --sid/);
  }
  // No code: a usage error before any key is made or anything sent (--no-code is for seed CAs).
  const home = `${pki.dir}/home-nocode`;
  const noCode = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--ca",
    pki.caAddr,
    "--ca-cert",
    pki.rootPath,
    "--home",
    home,
  ]);
  assert.equal(noCode.code, 2, noCode.stderr);
  assert.match(
    noCode.stderr,
    /^student enroll: missing required option --code \(or --code-file FILE\)\n/,
  );
  assert.equal(await exists(home), false, "no key was made");
  const both = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--code",
    "x",
    "--no-code",
  ]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /--code and --no-code disagree/);
  const twoCodes = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--code",
    "x",
    "--code-file",
    "-",
  ]);
  assert.equal(twoCodes.code, 2);
  assert.match(twoCodes.stderr, /--code and --code-file disagree/);
  const emptyFile = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--code-file",
    "-",
    "--ca",
    pki.caAddr,
    "--ca-cert",
    pki.rootPath,
    "--home",
    home,
  ], { stdin: "\n  \n" });
  assert.equal(emptyFile.code, 2, emptyFile.stderr);
  assert.match(emptyFile.stderr, /--code-file - \(standard input\) holds no code/);
  assert.equal(await exists(home), false, "no key was made");
  assert.deepEqual(pki.lines, [], "the CA saw no connection");
  const badPort = await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--code",
    "x",
    "--ca",
    "127.0.0.1:99999",
  ]);
  assert.equal(badPort.code, 2);
  assert.match(badPort.stderr, /--ca must be a port number/);
});

Deno.test("enrolment end to end as processes; the CA keeps its root across a restart", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir.path}/ca`;
  const { proc, addr } = await startCa(dataDir);
  let rootPem: string;
  try {
    await proc.waitFor(/STEP 0 created root key pair/);
    rootPem = await Deno.readTextFile(`${dataDir}/cuhk.cer`);
    const codeRun = await runActor("actors/ca.ts", ["code", "--sid", SID, "--data-dir", dataDir]);
    assert.equal(codeRun.code, 0, codeRun.stderr);
    assert.match(
      codeRun.stdout,
      /^[0-9a-f]{8}(-[0-9a-f]{8}){3}\n$/,
      "the code alone on standard output",
    );
    assert.match(codeRun.stderr, /single use, expires/);
    const home = `${dir.path}/home`;
    const args = [
      "enroll",
      "--sid",
      SID,
      // The code from a file, kept out of the process list (--code would show in 'ps').
      "--code-file",
      `${dir.path}/code.txt`,
      "--ca",
      addr,
      "--ca-cert",
      `${dataDir}/cuhk.cer`,
      "--home",
      home,
    ];
    await Deno.writeTextFile(`${dir.path}/code.txt`, codeRun.stdout);
    const enrol = await runActor("actors/student.ts", args);
    assert.equal(enrol.code, 0, enrol.stderr);
    assert.equal(enrol.stdout, `SID: ${SID} sign finished.\n`);
    assert.match(
      enrol.stderr,
      /STEP 1 generated an RSA-2048 key pair[\s\S]*STEP 1 sending CSR[\s\S]*STEP 2 cert 2/,
    );
    assert.equal((await Deno.stat(`${home}/student.key`)).mode! & 0o777, 0o600);
    assert.equal(await Deno.readTextFile(`${home}/cuhk.cer`), rootPem);

    // The same code a second time: refused, and the existing certificate is kept.
    const again = await runActor("actors/student.ts", args);
    assert.equal(again.code, 1);
    assert.match(again.stderr, /already holds a certificate/);
  } finally {
    const status = await proc.stop("SIGINT");
    assert.equal(status.code, 0, "SIGINT stops the CA cleanly");
  }
  const restarted = await startCa(dataDir);
  try {
    await restarted.proc.waitFor(/STEP 0 reusing root/);
    assert.equal(await Deno.readTextFile(`${dataDir}/cuhk.cer`), rootPem);
    const list = await runActor("actors/ca.ts", ["list", "--json", "--data-dir", dataDir]);
    const rows = JSON.parse(list.stdout) as { sid: string; status: string }[];
    assert.deepEqual(rows.map((r) => [r.sid, r.status]), [[SID, "valid"]]);
  } finally {
    await restarted.proc.stop("SIGINT");
  }
});

Deno.test("interop: an openssl CSR enrolled by the CA verifies with OpenSSL and GnuTLS, until revoked", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir.path}/ca`;
  const { proc, addr } = await startCa(dataDir);
  try {
    const d = dir.path;
    const req = await run("openssl", [
      "req",
      "-new",
      "-newkey",
      "rsa:2048",
      "-nodes",
      "-keyout",
      `${d}/me.key`,
      "-subj",
      `/CN=${SID}`,
      "-out",
      `${d}/me.csr`,
    ]);
    assert.equal(req.code, 0, req.stderr);
    const code = (await runActor("actors/ca.ts", ["code", "--sid", SID, "--data-dir", dataDir]))
      .stdout.trim();
    const enrol = await runActor("actors/student.ts", [
      "enroll",
      "--sid",
      SID,
      "--code",
      code,
      "--csr",
      `${d}/me.csr`,
      "--out",
      `${d}/me.cer`,
      "--ca",
      addr,
      "--ca-cert",
      `${dataDir}/cuhk.cer`,
    ]);
    assert.equal(enrol.code, 0, enrol.stderr);

    const root = `${dataDir}/cuhk.cer`;
    const strict = await run("openssl", [
      "verify",
      "-x509_strict",
      "-purpose",
      "sslclient",
      "-CAfile",
      root,
      `${d}/me.cer`,
    ]);
    assert.equal(strict.code, 0, strict.stdout + strict.stderr);
    assert.match(strict.stdout, /me\.cer: OK/);
    const rootStrict = await run("openssl", ["verify", "-x509_strict", "-CAfile", root, root]);
    assert.equal(rootStrict.code, 0, rootStrict.stdout + rootStrict.stderr);

    const gnutls = await run("certtool", [
      "--verify",
      "--load-ca-certificate",
      root,
      "--infile",
      `${d}/me.cer`,
    ]);
    assert.equal(gnutls.code, 0, gnutls.stdout + gnutls.stderr);
    assert.match(gnutls.stdout, /Chain verification output: Verified/);

    // Revoke by ID, write the CRL, and both peers read it.
    const revoke = await runActor("actors/ca.ts", ["revoke", "--sid", SID, "--data-dir", dataDir]);
    assert.equal(revoke.code, 0, revoke.stderr);
    const serial = revoke.stdout.trim();
    assert.match(serial, /^[0-9a-f]{32}$/);
    const crlRun = await runActor("actors/ca.ts", [
      "crl",
      "--out",
      `${d}/crl.pem`,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(crlRun.code, 0, crlRun.stderr);
    // Without --out, the CRL goes into the data directory, not the current folder.
    const crlDefault = await runActor("actors/ca.ts", ["crl", "--data-dir", dataDir]);
    assert.equal(crlDefault.code, 0, crlDefault.stderr);
    assert.match(crlDefault.stderr, new RegExp(`written to ${dataDir}/crl\\.pem\n`));
    assert.match(await Deno.readTextFile(`${dataDir}/crl.pem`), /^-----BEGIN X509 CRL-----\n/);
    const text = await run("openssl", [
      "crl",
      "-in",
      `${d}/crl.pem`,
      "-noout",
      "-text",
      "-CAfile",
      root,
    ]);
    assert.equal(text.code, 0, text.stderr);
    assert.match(text.stdout, /X509v3 CRL Number:\s*\n\s*\d+/);
    assert.match(text.stdout.toLowerCase(), new RegExp(`serial number: ${serial}`));
    assert.match(text.stderr + text.stdout, /verify OK/);

    const crlCheck = await run("openssl", [
      "verify",
      "-x509_strict",
      "-crl_check",
      "-CRLfile",
      `${d}/crl.pem`,
      "-CAfile",
      root,
      `${d}/me.cer`,
    ]);
    assert.notEqual(crlCheck.code, 0);
    assert.match(crlCheck.stdout + crlCheck.stderr, /certificate revoked/);

    const gnutlsCrl = await run("certtool", [
      "--verify",
      "--load-ca-certificate",
      root,
      "--load-crl",
      `${d}/crl.pem`,
      "--infile",
      `${d}/me.cer`,
    ]);
    assert.notEqual(gnutlsCrl.code, 0);
    assert.match(gnutlsCrl.stdout + gnutlsCrl.stderr, /revoked/i);

    const derCrl = await runActor("actors/ca.ts", [
      "crl",
      "--der",
      "--out",
      `${d}/crl.der`,
      "--data-dir",
      dataDir,
    ]);
    assert.equal(derCrl.code, 0);
    const derText = await run("openssl", [
      "crl",
      "-inform",
      "DER",
      "-in",
      `${d}/crl.der`,
      "-noout",
      "-CAfile",
      root,
    ]);
    assert.match(derText.stderr + derText.stdout, /verify OK/);

    const nothing = await runActor("actors/ca.ts", [
      "revoke",
      "--serial",
      "abcdef",
      "--data-dir",
      dataDir,
    ]);
    assert.equal(nothing.code, 1);
    assert.match(nothing.stderr, /No certificate with serial abcdef/);
  } finally {
    await proc.stop("SIGINT");
  }
});

Deno.test("ca issue writes a server key (0600) and certificate that OpenSSL accepts for TLS servers, for NAME and each --dns and --ip", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir.path}/ca`;
  const out = `${dir.path}/srv`;
  assert.equal((await runActor("actors/ca.ts", ["init", "--data-dir", dataDir])).code, 0);
  const r = await runActor("actors/ca.ts", [
    "issue",
    "--server",
    "chat",
    "--dns",
    "localhost",
    "--ip",
    "127.0.0.1",
    "--ip",
    "::1",
    "--out",
    out,
    "--data-dir",
    dataDir,
  ]);
  assert.equal(r.code, 0, r.stderr);
  assert.equal((await Deno.stat(`${out}/chat.key`)).mode! & 0o777, 0o600);
  const v = await run("openssl", [
    "verify",
    "-x509_strict",
    "-purpose",
    "sslserver",
    "-CAfile",
    `${out}/cuhk.cer`,
    `${out}/chat.cer`,
  ]);
  assert.equal(v.code, 0, v.stdout + v.stderr);
  const text = await run("openssl", [
    "x509",
    "-in",
    `${out}/chat.cer`,
    "-noout",
    "-ext",
    "subjectAltName,extendedKeyUsage,basicConstraints",
  ]);
  assert.match(text.stdout, /DNS:localhost, IP Address:127\.0\.0\.1, IP Address:0:0:0:0:0:0:0:1/);
  // The service's name first (also the CN), then each --dns and each --ip.
  assert.match(text.stdout, /DNS:chat, DNS:localhost, IP Address:127\.0\.0\.1,/);
  const verify = (name: string) =>
    run("openssl", [
      "verify",
      "-purpose",
      "sslserver",
      "-verify_hostname",
      name,
      "-CAfile",
      `${out}/cuhk.cer`,
      `${out}/chat.cer`,
    ]);
  for (const name of ["chat", "localhost"]) {
    const ok = await verify(name);
    assert.equal(ok.code, 0, `${name}: ${ok.stdout}${ok.stderr}`);
  }
  const bank = await verify("bank");
  assert.notEqual(bank.code, 0, "the chat's certificate does not name bank");
  assert.match(bank.stdout + bank.stderr, /hostname mismatch/);
  assert.match(text.stdout, /TLS Web Server Authentication/);
  assert.match(text.stdout, /CA:FALSE/);
  const bad = await runActor("actors/ca.ts", [
    "issue",
    "--server",
    "bad name!",
    "--out",
    out,
    "--data-dir",
    dataDir,
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /'bad name!' is not a DNS name/);
});

/** Enrols SID with no code (--no-code) against the CA at `addr`; returns the student's run. */
async function enrolWithoutCode(addr: string, dataDir: string, home: string) {
  return await runActor("actors/student.ts", [
    "enroll",
    "--sid",
    SID,
    "--no-code",
    "--ca",
    addr,
    "--ca-cert",
    `${dataDir}/cuhk.cer`,
    "--home",
    home,
  ]);
}

Deno.test("ca serve --protocol seed is open enrolment: an ID enrols without a code", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir.path}/ca`;
  const { proc, addr } = await startCa(dataDir, ["--protocol", "seed"]);
  try {
    assert.match(proc.stderr, /listening on .* \(seed protocol: open enrolment\)/);
    assert.match(proc.stderr, /WARNING --protocol seed \(open enrolment\): anyone can get/);
    assert.doesNotMatch(proc.stderr, /deprecated/);
    const enrol = await enrolWithoutCode(addr, dataDir, `${dir.path}/home`);
    assert.equal(enrol.code, 0, enrol.stderr);
    assert.equal(enrol.stdout, `SID: ${SID} sign finished.\n`);
  } finally {
    assert.equal((await proc.stop("SIGINT")).code, 0);
  }
  // The default protocol, said out loud or not: no code, no certificate.
  for (const extra of [["--protocol", "default"], []]) {
    const strict = await startCa(dataDir, extra);
    try {
      assert.match(strict.proc.stderr, /listening on .* \(default protocol\)/);
      const refused = await enrolWithoutCode(
        strict.addr,
        dataDir,
        `${dir.path}/home-${extra.length}`,
      );
      assert.equal(refused.code, 1);
      assert.match(refused.stderr, /Enrolment code is not valid/);
    } finally {
      await strict.proc.stop("SIGINT");
    }
  }
});

Deno.test("ca serve --open-enrolment still works for one release, with a deprecation warning", async () => {
  await using dir = await tempDir();
  const dataDir = `${dir.path}/ca`;
  const { proc, addr } = await startCa(dataDir, ["--open-enrolment"]);
  try {
    assert.match(
      proc.stderr,
      /^ca serve: --open-enrolment is deprecated; use --protocol default\|seed$/m,
    );
    assert.match(proc.stderr, /listening on .* \(seed protocol: open enrolment\)/);
    const enrol = await enrolWithoutCode(addr, dataDir, `${dir.path}/home`);
    assert.equal(enrol.code, 0, enrol.stderr);
  } finally {
    await proc.stop("SIGINT");
  }
  const both = await runActor("actors/ca.ts", [
    "serve",
    "--open-enrolment",
    "--protocol",
    "default",
    "--data-dir",
    dataDir,
  ]);
  assert.equal(both.code, 2);
  assert.match(both.stderr, /^ca serve: --open-enrolment means --protocol seed/);
  const bad = await runActor("actors/ca.ts", [
    "serve",
    "--protocol",
    "open",
    "--data-dir",
    dataDir,
  ]);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /^ca serve: --protocol must be default or seed, got 'open'/);
});

Deno.test("student fingerprint prints the SHA-256 fingerprint of the root it was handed, as 'ca init' and OpenSSL print it; another root gives another", async () => {
  await using dir = await tempDir("lab-fingerprint-");
  const cwd = dir.path;
  const init = await runActor("actors/ca.ts", ["init", "--data-dir", "ca"], { cwd });
  assert.equal(init.code, 0, init.stderr);
  const printed = /^SHA-256 fingerprint ((?:[0-9A-F]{2}:){31}[0-9A-F]{2})$/m.exec(init.stdout)?.[1];
  assert.ok(printed, init.stdout);
  // The file as a student received it, somewhere else.
  await Deno.copyFile(`${cwd}/ca/cuhk.cer`, `${cwd}/handed.cer`);
  const student = await runActor("actors/student.ts", [
    "fingerprint",
    "--ca-cert",
    "handed.cer",
  ], { cwd });
  assert.equal(student.code, 0, student.stderr);
  assert.equal(student.stdout, `handed.cer\nSHA-256 fingerprint ${printed}\n`);
  const openssl = await run("openssl", [
    "x509",
    "-in",
    `${cwd}/handed.cer`,
    "-noout",
    "-fingerprint",
    "-sha256",
  ]).catch(() => undefined);
  if (openssl) assert.equal(openssl.stdout.trim().replace(/^.*=/, ""), printed);

  const other = await runActor("actors/ca.ts", ["init", "--data-dir", "other"], { cwd });
  assert.equal(other.code, 0, other.stderr);
  const swapped = await runActor("actors/student.ts", [
    "fingerprint",
    "--ca-cert",
    "other/cuhk.cer",
  ], { cwd });
  assert.equal(swapped.code, 0, swapped.stderr);
  assert.doesNotMatch(swapped.stdout, new RegExp(printed));

  const missing = await runActor("actors/student.ts", ["fingerprint", "--ca-cert", "no.cer"], {
    cwd,
  });
  assert.equal(missing.code, 1);
  assert.match(
    missing.stderr,
    /^student: Cannot read the CA root certificate: no\.cer does not exist$/m,
  );
});
