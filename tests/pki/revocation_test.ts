/**
 * The shared revocation checker (lib/pki/revocation.ts) with real CRLs from the test CA, fetched
 * over the network as Blackboard and Bob fetch them: a fresh CRL, a stale one (fail closed), a
 * rollback to an older CRL (by number or by thisUpdate), an unreachable CA, and a CRL from another
 * CA.
 */

import assert from "node:assert/strict";
import { fetchCrl } from "../../lib/ca/mod.ts";
import {
  CertificateError,
  checkCrl,
  type Crl,
  type CrlFetch,
  crlNumber,
  RevocationChecker,
  RevocationUnavailableError,
} from "../../lib/pki/mod.ts";
import type { HostPort } from "../../lib/runtime/mod.ts";
import { memoryLog, TestPki } from "../_fixtures/helpers.ts";

const HOUR_MS = 3_600_000;

function caOf(pki: TestPki): HostPort {
  return { hostname: "127.0.0.1", port: pki.server.port };
}

/** The CA's CRL over the network, counting fetches. */
function countingFetch(pki: TestPki): { fetch: CrlFetch; count: () => number } {
  let n = 0;
  return {
    fetch: (timeoutMs) => {
      n++;
      return fetchCrl(caOf(pki), pki.root, timeoutMs);
    },
    count: () => n,
  };
}

/** A port where nothing listens. */
function deadPort(): number {
  const l = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = (l.addr as Deno.NetAddr).port;
  l.close();
  return port;
}

function isRevoked(crl: Crl, serial: string): boolean {
  return crl.entries.some((e) => e.serialNumber.toLowerCase() === serial.toLowerCase());
}

Deno.test("revocation: a fresh CRL is fetched once, shared, reused within the refresh interval, then fetched again", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student("1155000301");
  const { log, lines } = memoryLog("server");
  const source = countingFetch(pki);
  const checker = new RevocationChecker({
    fetch: source.fetch,
    source: `the CA at ${pki.caAddr}`,
    root: pki.root,
    log,
    refreshMs: 300,
  });
  // Concurrent sessions share one fetch.
  const crls = await Promise.all([checker.current(), checker.current(), checker.current()]);
  assert.equal(source.count(), 1);
  assert.ok(crls.every((c) => c === crls[0]));
  assert.equal(crls[0]!.entries.length, 0);
  assert.match(
    lines.join("\n"),
    /CRL from the CA at 127\.0\.0\.1:\d+: 0 revoked \(CRL #\d+, valid until /,
  );
  // Within the refresh interval: no fetch.
  assert.equal(await checker.current(), crls[0]);
  assert.equal(source.count(), 1);

  // A revocation reaches the checker once the interval has passed.
  pki.ca.revoke({ sid: student.sid });
  await new Promise((r) => setTimeout(r, 350));
  const after = await checker.current();
  assert.equal(source.count(), 2);
  assert.ok(isRevoked(after, student.cert.serialNumber));
  assert.ok(crlNumber(after)! > crlNumber(crls[0]!)!);
});

Deno.test("revocation: a stale CRL fails closed; the last CRL serves only until its nextUpdate", async () => {
  await using pki = await TestPki.start();
  const { log, lines } = memoryLog("server");
  let clock = Date.now();
  const source = countingFetch(pki);
  const checker = new RevocationChecker({
    fetch: source.fetch,
    source: `the CA at ${pki.caAddr}`,
    root: pki.root,
    log,
    refreshMs: 1000,
    now: () => clock,
  });
  const crl = await checker.current();
  const nextUpdate = crl.nextUpdate!.getTime();
  assert.ok(nextUpdate - clock > HOUR_MS / 2, "the CA's CRLs are valid for an hour");

  // Half an hour later the CA still serves the same CRL: fine.
  clock += HOUR_MS / 2;
  assert.equal(crlNumber(await checker.current()), crlNumber(crl));

  // Two hours later the CA (still up) can only hand out a CRL that is past its nextUpdate for
  // this clock, as an attacker replaying an old CRL would: refused, and the held one is stale too.
  clock = nextUpdate + HOUR_MS;
  await assert.rejects(checker.current(), (err: unknown) => {
    assert.ok(err instanceof RevocationUnavailableError);
    assert.match(
      err.message,
      /^Cannot check revocation: CRL has expired \(next update was due\), and no valid CRL is held$/,
    );
    return true;
  });

  // The CA goes down while the held CRL is still valid: it is used, with a warning.
  clock = Date.now();
  const fresh = new RevocationChecker({
    fetch: source.fetch,
    source: `the CA at ${pki.caAddr}`,
    root: pki.root,
    log,
    refreshMs: 0,
    now: () => clock,
  });
  const held = await fresh.current();
  await pki.server.close();
  clock += 60_000;
  assert.equal(await fresh.current(), held);
  assert.match(
    lines.join("\n"),
    /WARNING cannot refresh the CRL \(Cannot reach the CA at 127\.0\.0\.1:\d+: .*\): using CRL #\d+, valid until /,
  );
  // Past its nextUpdate with the CA still down: fail closed, every time.
  clock = held.nextUpdate!.getTime() + 1;
  for (let i = 0; i < 2; i++) {
    await assert.rejects(
      fresh.current(),
      /^RevocationUnavailableError: Cannot check revocation: Cannot reach the CA at .*, and no valid CRL is held$/,
    );
  }
});

Deno.test("revocation: a CRL whose number goes backwards is refused (no rollback to before a revocation)", async () => {
  await using pki = await TestPki.start();
  const student = await pki.student("1155000302");
  const older = await pki.ca.crl();
  pki.ca.revoke({ sid: student.sid });
  const newer = await pki.ca.crl();
  assert.ok(crlNumber(newer)! > crlNumber(older)!);
  assert.ok(isRevoked(newer, student.cert.serialNumber));
  assert.ok(!isRevoked(older, student.cert.serialNumber));

  // The source first gives the newer CRL, then only the older one (a path attacker replaying it).
  const served: Crl[] = [newer];
  const { log, lines } = memoryLog("server");
  let clock = Date.now();
  const checker = new RevocationChecker({
    fetch: () => Promise.resolve(served.shift() ?? older),
    source: "the test source",
    root: pki.root,
    log,
    refreshMs: 0,
    now: () => clock,
  });
  assert.equal(await checker.current(), newer);
  const kept = await checker.current();
  assert.equal(kept, newer, "the newer CRL is kept");
  assert.ok(isRevoked(kept, student.cert.serialNumber), "the revocation still applies");
  assert.match(
    lines.join("\n"),
    new RegExp(
      `WARNING cannot refresh the CRL \\(CRL #${
        crlNumber(older)
      } from the test source is older than CRL #${
        crlNumber(newer)
      }, already held: refused \\(a rollback\\)\\)`,
    ),
  );
  // The older CRL never replaces it, even once the newer one is stale: fail closed.
  clock = newer.nextUpdate!.getTime() - 1000;
  assert.equal(await checker.current(), newer);
  clock = newer.nextUpdate!.getTime() + 1;
  await assert.rejects(checker.current(), RevocationUnavailableError);
});

Deno.test("revocation: an unreachable CA and no CRL held: fail closed", async () => {
  await using pki = await TestPki.start();
  const ca = { hostname: "127.0.0.1", port: deadPort() };
  const { log } = memoryLog("server");
  const checker = new RevocationChecker({
    fetch: (timeoutMs) => fetchCrl(ca, pki.root, timeoutMs),
    source: `the CA at 127.0.0.1:${ca.port}`,
    root: pki.root,
    log,
  });
  await assert.rejects(checker.current(), (err: unknown) => {
    assert.ok(err instanceof RevocationUnavailableError);
    assert.match(
      err.message,
      /^Cannot check revocation: Cannot reach the CA at 127\.0\.0\.1:\d+: .*, and no valid CRL is held$/,
    );
    return true;
  });
});

Deno.test("revocation: a CRL signed by another CA is refused, whatever the source says", async () => {
  await using pki = await TestPki.start();
  await using other = await TestPki.start();
  const { log } = memoryLog("server");
  // Another CA's CRL (same root name, another key), handed over without a check.
  const checker = new RevocationChecker({
    fetch: async () => await other.ca.crl(),
    source: "a rogue source",
    root: pki.root,
    log,
  });
  await assert.rejects(
    checker.current(),
    /^RevocationUnavailableError: Cannot check revocation: CRL('s signature does not match the root| is not issued by the pinned root), and no valid CRL is held$/,
  );
});

/** A CRL signed by the test root with a chosen number and thisUpdate (createCrl: now - 1 s). */
async function craftCrl(pki: TestPki, crlNumber: number, issuedAt: Date): Promise<Crl> {
  return await pki.signCrl(crlNumber, {
    now: new Date(issuedAt.getTime() + 1000),
    validityMs: 2 * HOUR_MS,
  });
}

Deno.test("revocation: a CRL is older when its number goes backwards, or its thisUpdate does", async () => {
  await using pki = await TestPki.start();
  const now = Date.now();
  const at = (minutes: number) => new Date(now + minutes * 60_000);
  const held = await craftCrl(pki, 10, at(-30));
  const check = (crl: Crl) => checkCrl(crl, { root: pki.root, held, source: "the test source" });

  // Number backwards, thisUpdate forwards: refused by its number.
  await assert.rejects(check(await craftCrl(pki, 9, at(-10))), (err: unknown) => {
    assert.ok(err instanceof CertificateError);
    assert.equal(
      err.message,
      "CRL #9 from the test source is older than CRL #10, already held: refused (a rollback)",
    );
    return true;
  });
  // Number forwards, thisUpdate backwards: refused by its thisUpdate.
  await assert.rejects(check(await craftCrl(pki, 11, at(-50))), (err: unknown) => {
    assert.ok(err instanceof CertificateError);
    assert.match(
      err.message,
      /^CRL #11 from the test source was issued at .*, before CRL #10 already held \(.*\): refused \(a rollback\)$/,
    );
    return true;
  });
  // Forwards in both, or the same CRL again: accepted.
  await check(await craftCrl(pki, 11, at(-10)));
  await check(held);

  // The checker applies the same rules and keeps the newer CRL.
  const served = [held, await craftCrl(pki, 12, at(-40))];
  const { log, lines } = memoryLog("server");
  const checker = new RevocationChecker({
    fetch: () => Promise.resolve(served.shift() ?? held),
    source: "the test source",
    root: pki.root,
    log,
    refreshMs: 0,
  });
  assert.equal(await checker.current(), held);
  assert.equal(await checker.current(), held, "the CRL issued earlier is not taken");
  assert.match(
    lines.join("\n"),
    /WARNING cannot refresh the CRL \(CRL #12 .* was issued at .*, before CRL #10 /,
  );
});
