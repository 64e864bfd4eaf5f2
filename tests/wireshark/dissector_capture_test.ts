/**
 * pcap/lab.lua on real captures (`tshark -X lua_script:pcap/lab.lua`): the upload scenario (CA,
 * student, Blackboard) and the bank scenario (CA, Alice, Bob) run as real processes on free ports
 * while dumpcap captures them; every byte of every lab connection must belong to a message the
 * dissector names, in the order of the protocol's steps. Every certificate, CSR and CRL is shown
 * by Wireshark's own X.509 and PKCS#10 dissectors under its field (Trudy's too, in bank-mitm).
 * Hostile input (unknown types, truncated fields, frames split across segments, bytes that are not
 * DER where a certificate belongs) is dissected without losing the conversation.
 */

import assert from "node:assert/strict";
import { bankProtocol } from "../../lib/bank/mod.ts";
import { blackboardProtocol } from "../../lib/blackboard/mod.ts";
import { caProtocol } from "../../lib/ca/mod.ts";
import {
  Capture,
  labCoverage,
  labReading,
  readLabMessages,
  tshark,
} from "../../lib/wireshark/mod.ts";
import { runScenario, type ScenarioResult } from "../../tasks/scenarios/mod.ts";
import { encodeFrame } from "../../lib/wire/mod.ts";
import { Changes, waitFor } from "../../lib/runtime/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

async function scenario(
  name: "upload" | "bank" | "seed" | "attack-bank-mitm",
  dir: string,
): Promise<ScenarioResult> {
  const lines: string[] = [];
  const r = await runScenario(name, {
    outDir: `${dir}/out`,
    workParent: `${dir}/work`,
    capture: true,
    diagram: false,
    sink: (l) => lines.push(l),
  });
  assert.ok(
    r.ok,
    `${r.error ?? ""}\n${r.checks.map((c) => c.report).join("\n")}\n${lines.join("\n")}`,
  );
  assert.ok(r.capture);
  return r;
}

/** A DER structure as `tshark -V` shows it under a lab field. */
interface DerShown {
  /** The lab's field, e.g. `certificate`. */
  field: string;
  /** `Certificate`, `CertificationRequest` or `CertificateList`. */
  structure: string;
  /** The names in the issuer and subject, as Wireshark sums them up (`id-at-commonName=…`). */
  issuer?: string | undefined;
  subject?: string | undefined;
}

/**
 * Every DER structure in tshark's verbose output that Wireshark's X.509 or PKCS#10 dissector shows
 * inside a lab field (indented under `certificate: 3082… (N bytes)`), in order.
 */
function derShown(verbose: string): DerShown[] {
  const lines = verbose.split("\n");
  const depth = (l: string) => l.length - l.trimStart().length;
  const shown: DerShown[] = [];
  for (let i = 0; i < lines.length; i++) {
    const m = /^(\s*)(\w+): [0-9a-f]+…? \(\d+ bytes\)$/.exec(lines[i]!);
    if (!m) continue;
    const block: string[] = [];
    for (let j = i + 1; j < lines.length && depth(lines[j]!) > m[1]!.length; j++) {
      block.push(lines[j]!);
    }
    const structure = block.find((l) =>
      depth(l) === m[1]!.length + 4 &&
      /^(Certificate|CertificationRequest|CertificateList)\b/.test(l.trim())
    );
    if (!structure) continue;
    const names = (what: string) => {
      const k = block.findIndex((l) => l.trim().startsWith(`${what}: `));
      return k < 0
        ? undefined
        : /^rdnSequence: \d+ items? \((.*)\)$/.exec(block[k + 1]!.trim())?.[1];
    };
    shown.push({
      field: m[2]!,
      structure: structure.trim().split(" ")[0]!,
      issuer: names("issuer"),
      subject: names("subject"),
    });
  }
  return shown;
}

/** `tshark -V` of the frames that match `filter`, dissected by pcap/lab.lua. */
async function verbose(capture: string, filter: string): Promise<string> {
  return await tshark([
    ...labReading(capture),
    "-V",
    "-Y",
    filter,
  ]);
}

const CUHK_ROOT =
  "id-at-countryName=HK,id-at-organizationName=The Chinese University of Hong Kong,id-at-commonName=CUHK Root CA";

function collapse(labels: string[]): string[] {
  // Runs of the same label (records, chunks) collapse into one entry.
  return labels.filter((l, i) => l !== labels[i - 1]);
}

Deno.test("dissector: every message of a real upload capture is named by its step", async () => {
  await using dir = await tempDir("lab-dissect-upload-");
  const r = await scenario("upload", dir.path);
  const messages = await readLabMessages(r.capture!);
  const labels = messages.map((m) => m.label);
  const bb = (t: keyof typeof blackboardProtocol.messages) => blackboardProtocol.label(t);
  // Enrolment, then the CRL that Blackboard fetches while it checks cert 2.
  assert.deepEqual(labels.slice(0, 2), [caProtocol.label("csr"), caProtocol.label("certificate")]);
  // The message session, in order.
  const session1 = labels.filter((l) => !l.startsWith("CRL")).slice(2, 8);
  // The default's step 6 is AES-GCM: each record is named, what it carries is not visible.
  assert.deepEqual(session1, [
    bb("request"),
    bb("sessionKey"),
    bb("confirm"),
    bb("ready"),
    bb("sealed"),
    bb("sealed"),
  ]);
  // The upload session: uploadBegin, uploadOffset, 600 KiB in three chunks of at most 256 KiB,
  // uploadEnd, receipt: seven sealed records, each frame reassembled.
  const uploadSession = labels.slice(labels.lastIndexOf(bb("request")));
  assert.deepEqual(collapse(uploadSession), [
    bb("request"),
    bb("sessionKey"),
    bb("confirm"),
    bb("ready"),
    bb("sealed"),
  ]);
  assert.equal(uploadSession.filter((l) => l === bb("sealed")).length, 7);
  assert.ok(!labels.some((l) => l.startsWith(bb("record"))), "no readable record in the default");
  assert.ok(labels.includes(caProtocol.label("crlRequest")));
  assert.ok(labels.includes(caProtocol.label("crl")));
  // Every payload byte of every connection is inside a named frame.
  for (const [stream, c] of await labCoverage(r.capture!)) {
    assert.equal(c.named, c.wire, `stream ${stream}: ${c.named} of ${c.wire} bytes named`);
  }
  // Retransmitted segments carry bytes already counted (loopback does retransmit): a capture with
  // every packet twice (mergecap of it with itself) still has every payload byte named, once.
  const doubled = `${dir.path}/doubled.pcapng`;
  const merged = await new Deno.Command("mergecap", {
    args: ["-w", doubled, r.capture!, r.capture!],
  }).output();
  assert.ok(merged.success, new TextDecoder().decode(merged.stderr));
  const once = await labCoverage(r.capture!);
  for (const [stream, c] of await labCoverage(doubled)) {
    assert.equal(c.named, c.wire, `doubled stream ${stream}: ${c.named} of ${c.wire} bytes named`);
    assert.deepEqual(c, once.get(stream), `doubled stream ${stream} counted like the original`);
  }
  // Info column: the step name and the seed's request line.
  const info = await tshark(labReading(r.capture!));
  assert.match(info, /Blackboard .* STEP 3 request \| cert 2 request="SID:1155123456 requests/);
  assert.match(info, /CUHK .* STEP 1 CSR sid="1155123456"/);
  // Wireshark's own dissectors show what the DER fields hold: the CSR and cert 2 of 1155123456,
  // issued by the CUHK root; Blackboard's certificate and the stapled CRL at step 4.
  const student = "id-at-commonName=1155123456";
  assert.deepEqual(derShown(await verbose(r.capture!, "cuhk.csr.csr")), [
    { field: "csr", structure: "CertificationRequest", issuer: undefined, subject: student },
  ]);
  const cert2 = {
    field: "certificate",
    structure: "Certificate",
    issuer: CUHK_ROOT,
    subject: student,
  };
  assert.deepEqual(derShown(await verbose(r.capture!, "cuhk.certificate.certificate")), [cert2]);
  // Sent twice, at step 3 of the message session and of the upload session.
  assert.deepEqual(derShown(await verbose(r.capture!, "blackboard.request.certificate")), [
    cert2,
    cert2,
  ]);
  const step4 = [
    {
      field: "certificate",
      structure: "Certificate",
      issuer: CUHK_ROOT,
      subject: "id-at-commonName=blackboard",
    },
    { field: "crl", structure: "CertificateList", issuer: CUHK_ROOT, subject: undefined },
  ];
  assert.deepEqual(derShown(await verbose(r.capture!, "blackboard.sessionKey.certificate")), [
    ...step4,
    ...step4,
  ]);
  const crls = derShown(await verbose(r.capture!, "cuhk.crl.crl"));
  assert.ok(crls.length >= 1);
  for (const c of crls) assert.deepEqual(c, step4[1]);
  // Validity and extensions are in the tree too, and the Info column stays the lab's.
  const tree = await verbose(r.capture!, "cuhk.certificate.certificate");
  assert.match(tree, /validity\n\s+notBefore: utcTime/);
  assert.match(tree, /KeyPurposeId: 1\.3\.6\.1\.5\.5\.7\.3\.2 \(id-kp-clientAuth\)/);
  assert.match(info, /CUHK \d+ STEP 2 cert 2\n/);
  // The lab's field is still there for filters, the whole DER certificate as its value.
  const der = await tshark([
    ...labReading(r.capture!),
    "-Y",
    "cuhk.certificate.certificate",
    "-T",
    "fields",
    "-e",
    "cuhk.certificate.certificate",
  ]);
  assert.match(der.trim(), /^3082[0-9a-f]{4}30820/);
});

Deno.test("dissector: every message of a real bank capture is named by its step", async () => {
  await using dir = await tempDir("lab-dissect-bank-");
  const r = await scenario("bank", dir.path);
  const all = (await readLabMessages(r.capture!)).map((m) => m.label);
  // Bob fetches the CA's CRL (--ca); the rest is Alice's enrolment and session.
  assert.ok(all.includes(caProtocol.label("crlRequest")));
  assert.ok(all.includes(caProtocol.label("crl")));
  const labels = all.filter((l) => !l.startsWith("CRL"));
  const b = (t: keyof typeof bankProtocol.messages) => bankProtocol.label(t);
  assert.deepEqual(collapse(labels), [
    caProtocol.label("csr"),
    caProtocol.label("certificate"),
    b("hello"),
    b("hiBob"),
    b("proveIt"),
    b("proof"),
    b("secret"),
    b("record"),
  ]);
  // deposit, withdraw, balance, exit: a record each way for each, at least.
  assert.ok(labels.filter((l) => l === b("record")).length >= 7);
  // Bob's certificate and stapled CRL at step 2, Alice's certificate at step 5, read by Wireshark.
  assert.deepEqual(derShown(await verbose(r.capture!, "bank.hiBob.certificate")), [
    {
      field: "certificate",
      structure: "Certificate",
      issuer: CUHK_ROOT,
      subject: "id-at-commonName=bank",
    },
    { field: "crl", structure: "CertificateList", issuer: CUHK_ROOT, subject: undefined },
  ]);
  // Alice is 1155000001 in the bank scenario.
  assert.deepEqual(derShown(await verbose(r.capture!, "bank.secret.certificate")), [
    {
      field: "certificate",
      structure: "Certificate",
      issuer: CUHK_ROOT,
      subject: "id-at-commonName=1155000001",
    },
  ]);
  for (const [stream, c] of await labCoverage(r.capture!)) {
    assert.equal(c.named, c.wire, `stream ${stream}: ${c.named} of ${c.wire} bytes named`);
  }
});

Deno.test("dissector: seed mode on the wire, the session key echoed in the clear", async () => {
  await using dir = await tempDir("lab-dissect-seed-");
  const r = await scenario("seed", dir.path);
  const messages = await readLabMessages(r.capture!);
  const bb = (t: keyof typeof blackboardProtocol.messages) => blackboardProtocol.label(t);
  const b = (t: keyof typeof bankProtocol.messages) => bankProtocol.label(t);
  const steps = collapse(
    messages.filter((m) => m.protocol !== "CUHK").map((m) => m.label),
  );
  assert.deepEqual(steps, [
    bb("seedRequest"),
    bb("seedSessionKey"),
    bb("seedKeyEcho"),
    bb("seedOk"),
    bb("seedMessage"),
    b("seedHello"),
    b("seedHiBob"),
    b("seedProveIt"),
    b("seedProof"),
    b("seedSecret"),
    b("seedRecord"),
  ]);
  // The flaw, visible to anyone with the capture: the 32-byte session key as a field.
  const key = await tshark([
    ...labReading(r.capture!),
    "-Y",
    "blackboard.seedKeyEcho.sessionKey",
    "-T",
    "fields",
    "-e",
    "blackboard.seedKeyEcho.sessionKey",
  ]);
  assert.match(key.trim(), /^[0-9a-f]{64}$/);
  for (const [stream, c] of await labCoverage(r.capture!)) {
    assert.equal(c.named, c.wire, `stream ${stream}: ${c.named} of ${c.wire} bytes named`);
  }
});

Deno.test("dissector: Trudy's certificate in bank-mitm shows her own root as its issuer", async () => {
  await using dir = await tempDir("lab-dissect-mitm-");
  const r = await scenario("attack-bank-mitm", dir.path);
  // The default leg: Bob's real "Hi, I'm Bob" reaches Trudy; she sends Alice her own certificate
  // for Bob's name (CUHK's stapled CRL passed on), and Alice refuses it.
  const shown = derShown(await verbose(r.capture!, "bank.hiBob.certificate"));
  const certs = shown.filter((s) => s.structure === "Certificate");
  assert.deepEqual(certs, [
    {
      field: "certificate",
      structure: "Certificate",
      issuer: CUHK_ROOT,
      subject: "id-at-commonName=bank",
    },
    {
      field: "certificate",
      structure: "Certificate",
      issuer: "id-at-commonName=Trudy Root CA",
      subject: "id-at-commonName=bank",
    },
  ]);
  // Wireshark's own fields filter on it: one frame, from Trudy's port to Alice.
  const trudy = await tshark([
    ...labReading(r.capture!),
    "-Y",
    'x509sat.printableString == "Trudy Root CA"',
    "-T",
    "fields",
    "-e",
    "_ws.col.Info",
  ]);
  assert.deepEqual(trudy.trim().split("\n"), [`STEP 2 Hi, I'm Bob greeting="Hi, I'm Bob"`]);
});

Deno.test("dissector: split frames, unknown types and truncated fields on a hostile connection", async () => {
  await using dir = await tempDir("lab-dissect-hostile-");
  using listener = Deno.listen({ hostname: "127.0.0.1", port: 0 });
  const port = listener.addr.port;
  let total = 0;
  const arrived = new Changes();
  const received = (async () => {
    const conn = await listener.accept();
    const buf = new Uint8Array(64 * 1024);
    for (;;) {
      const n = await conn.read(buf);
      if (n === null) break;
      total += n;
      arrived.notify();
    }
    conn.close();
    return total;
  })();
  const capture = await Capture.start({ ports: [port], workDir: `${dir.path}/work` });
  const conn = await Deno.connect({ hostname: "127.0.0.1", port });
  // Each write leaves in its own segment: the next one waits until the listener has read it.
  let sent = 0;
  const send = async (bytes: Uint8Array) => {
    sent += await conn.write(bytes);
    await waitFor(() => total >= sent, {
      what: `${sent} bytes read by the listener`,
      changes: arrived,
    });
  };
  // A CRL request in one segment: enough for the heuristic to recognise the conversation.
  await send(encodeFrame(caProtocol.encode("crlRequest", {})));
  // A valid CSR frame in three segments, the length itself split: reassembled into one message.
  const csr = encodeFrame(caProtocol.encode("csr", {
    sid: "1155123456",
    binding: new Uint8Array(32).fill(9),
    csr: new Uint8Array(3000).fill(7),
  }));
  for (const [a, b] of [[0, 2], [2, 1500], [1500, csr.length]] as const) {
    await send(csr.subarray(a, b));
  }
  // An unknown message type, then a CRL request whose length runs past the frame.
  await send(encodeFrame(Uint8Array.of(0x55, 1, 2, 3)));
  await send(encodeFrame(Uint8Array.of(0x04, 0, 0, 0, 99, 1)));
  conn.close();
  assert.equal(await received, 5 + csr.length + 8 + 10);
  const { path } = await capture.finish(`${dir.path}/hostile.pcapng`);
  const messages = await readLabMessages(path);
  assert.deepEqual(messages.map((m) => m.label), [
    caProtocol.label("crlRequest"),
    caProtocol.label("csr"),
    "unknown message type 0x55",
    caProtocol.label("crl"),
  ]);
  // The CSR was named once, on the segment that completed it.
  const frames = new Set(messages.map((m) => m.frame));
  assert.equal(frames.size, 4);
  // The malformed messages carry expert errors.
  const errors = await tshark([
    ...labReading(path),
    "-Y",
    "_ws.expert.severity == error",
    "-T",
    "fields",
    "-e",
    "_ws.expert.message",
  ]);
  assert.match(errors, /Unknown message type/);
  assert.match(errors, /Truncated field crl/);
  // The CSR field held 3000 bytes of 0x07, not DER: the PKCS#10 dissector says so under the field,
  // and the message is still named (above) with its own fields.
  const notDer = await verbose(path, "cuhk.csr.csr");
  assert.match(notDer, /csr: (07)+… \(3000 bytes\)/);
  assert.match(notDer, /sid: 1155123456 \(10 bytes\)/);
  assert.doesNotMatch(notDer, /Lua Error/);
  assert.match(
    notDer,
    /Field length: 3000\n\s+CertificationRequest\n\s+BER Error: Sequence expected but class:UNIVERSAL\(0\) Primitive tag:7 was unexpected/,
  );
});
