/**
 * The handshake timing rules (lib/wireshark/tls_timing.ts) on packets as tshark read them from
 * real chat captures: the TLS 1.2 stall (the server's Finished held 42 ms by Nagle's algorithm
 * until the client's delayed ACK), the same handshake with TCP_NODELAY; in TLS 1.3, the server's
 * flight held the same way, a client whose Finished is held while the server's flight arrives in
 * between (only the ACK rule sees those), and a client's verification time, which is no wait.
 */

import assert from "node:assert/strict";
import {
  checkTimings,
  handshakeTiming,
  type TcpSegment,
  type TlsConnection,
  type TlsRecord,
} from "../../lib/wireshark/mod.ts";

const CLIENT = 52386;
const SERVER = 34309;

type Packet = [frame: number, ms: number, from: "c" | "s", len: number, seq: number, ack: number];

function segments(packets: Packet[], stream = 0): TcpSegment[] {
  return packets.map(([frame, ms, from, len, seq, ack]) => ({
    frame,
    time: ms / 1000,
    stream,
    srcPort: from === "c" ? CLIENT : SERVER,
    dstPort: from === "c" ? SERVER : CLIENT,
    len,
    seq,
    ack,
    control: false,
  }));
}

type Rec = [frame: number, ms: number, from: "c" | "s", wire: string, content?: string | null];

function connection(records: Rec[], stream = 0): TlsConnection {
  return {
    stream,
    client: `127.0.0.1:${CLIENT}`,
    server: `127.0.0.1:${SERVER}`,
    records: records.map(([frame, ms, from, wire, content]): TlsRecord => ({
      frame,
      time: ms / 1000,
      stream,
      from: from === "c" ? "client" : "server",
      wire,
      content: content === undefined ? wire : content,
    })),
  };
}

const TLS12_HELLOS: Rec[] = [
  [4, 30.209, "c", "Client Hello"],
  [6, 59.726, "s", "Server Hello, Certificate, Server Key Exchange, Server Hello Done"],
  [8, 60.855, "c", "Client Key Exchange"],
  [8, 60.855, "c", "Change Cipher Spec"],
  [8, 60.855, "c", "Encrypted Handshake Message", "Finished"],
];

/** chat-tls12 before the fix (frames and times from the capture). */
const STALLED = {
  records: connection([
    ...TLS12_HELLOS,
    [9, 61.375, "s", "Change Cipher Spec"],
    [11, 103.682, "s", "Encrypted Handshake Message", "Finished"],
    [13, 108.814, "c", "Application Data"],
  ]),
  packets: segments([
    [3, 0.029, "c", 0, 1, 1],
    [4, 30.209, "c", 151, 1, 1],
    [5, 30.231, "s", 0, 1, 152],
    [6, 59.726, "s", 1440, 1, 152],
    [7, 59.747, "c", 0, 152, 1441],
    [8, 60.855, "c", 93, 152, 1441],
    [9, 61.375, "s", 6, 1441, 245],
    [10, 103.661, "c", 0, 245, 1447],
    [11, 103.682, "s", 45, 1447, 245],
    [12, 103.693, "c", 0, 245, 1492],
    [13, 108.814, "c", 63, 245, 1492],
  ]),
};

/** chat-tls12 with TCP_NODELAY on the server: two segments, 19 µs apart. */
const FIXED = {
  records: connection([
    ...TLS12_HELLOS,
    [9, 61.375, "s", "Change Cipher Spec"],
    [10, 61.394, "s", "Encrypted Handshake Message", "Finished"],
    [12, 66.1, "c", "Application Data"],
  ]),
  packets: segments([
    [4, 30.209, "c", 151, 1, 1],
    [5, 30.231, "s", 0, 1, 152],
    [6, 59.726, "s", 1440, 1, 152],
    [7, 59.747, "c", 0, 152, 1441],
    [8, 60.855, "c", 93, 152, 1441],
    [9, 61.375, "s", 6, 1441, 245],
    [10, 61.394, "s", 45, 1447, 245],
    [11, 61.41, "c", 0, 245, 1492],
    [12, 66.1, "c", 63, 245, 1492],
  ]),
};

Deno.test("the TLS 1.2 stall before the fix breaks all three rules", () => {
  const t = handshakeTiming(STALLED.records, STALLED.packets);
  assert.ok(t.completed);
  assert.deepEqual(t.frames, [4, 11]);
  assert.equal(t.problems.length, 3, t.problems.join("\n"));
  assert.match(
    t.problems[0]!,
    /server's Change Cipher Spec and Finished did not leave together: frames 9 and 11, 42\.307 ms apart, with the client's frame 10 in between/,
  );
  assert.match(
    t.problems[1]!,
    /42\.307 ms later, with no record from the client in between \(more than 5 ms\)/,
  );
  assert.match(
    t.problems[2]!,
    /server's segment in frame 11 \(45 bytes\) left 0\.021 ms after the client's ACK in frame 10, which came 42\.286 ms after the data it acknowledges \(frame 9\): Nagle's algorithm held it/,
  );
  // The client's own flight was one segment all along.
  assert.ok(
    t.findings.some((f) =>
      /client's Change Cipher Spec and Finished in one TCP segment \(frame 8\)/.test(f)
    ),
  );
});

Deno.test("with TCP_NODELAY the same handshake passes: Change Cipher Spec and Finished back to back", () => {
  const t = handshakeTiming(FIXED.records, FIXED.packets);
  assert.deepEqual(t.problems, []);
  assert.ok(
    t.findings.some((f) =>
      /server's Change Cipher Spec and Finished back to back \(frames 9 and 10, 0\.019 ms apart/
        .test(f)
    ),
    t.findings.join("\n"),
  );
  assert.equal(t.longestGap.ms, 0.019);
  assert.ok(t.findings.includes("no segment held until a delayed ACK"));
});

Deno.test("a TLS 1.3 client's Finished held for the server's delayed ACK: only the ACK rule sees it", () => {
  // The client's Change Cipher Spec crosses the server's flight; the server acknowledges it 40 ms
  // later, and only then does the client's Finished (ready long before) leave.
  const records = connection([
    [4, 10, "c", "Client Hello"],
    [6, 11, "s", "Server Hello"],
    [7, 11.2, "c", "Change Cipher Spec"],
    [8, 11.21, "s", "Change Cipher Spec"],
    [
      9,
      11.22,
      "s",
      "Application Data",
      "Encrypted Extensions, Certificate, Certificate Verify, Finished",
    ],
    [12, 53.5, "c", "Application Data", "Finished"],
  ]);
  const packets = segments([
    [4, 10, "c", 227, 1, 1],
    [5, 10.02, "s", 0, 1, 228],
    [6, 11, "s", 127, 1, 228],
    [7, 11.2, "c", 6, 228, 128],
    [8, 11.21, "s", 6, 128, 228],
    [9, 11.22, "s", 1393, 134, 228],
    [10, 11.23, "c", 0, 234, 1527],
    [11, 53.48, "s", 0, 1527, 234],
    [12, 53.5, "c", 74, 234, 1527],
  ]);
  const t = handshakeTiming(records, packets);
  assert.equal(t.problems.length, 1, t.problems.join("\n"));
  assert.match(
    t.problems[0]!,
    /client's segment in frame 12 \(74 bytes\) left 0\.02 ms after the server's ACK in frame 11, which came 42\.28 ms after the data it acknowledges \(frame 7\)/,
  );
});

/** The records of a TLS 1.3 handshake as the chat captures show them, at the given times. */
function tls13(
  t: { ch: number; sh: number; sccs: number; flight: number; ccs: number; fin: number },
) {
  return connection([
    [4, t.ch, "c", "Client Hello"],
    [6, t.sh, "s", "Server Hello"],
    ...(t.ccs < t.sccs ? [[7, t.ccs, "c", "Change Cipher Spec"] as Rec] : []),
    [8, t.sccs, "s", "Change Cipher Spec"],
    [
      10,
      t.flight,
      "s",
      "Application Data",
      "Encrypted Extensions, Certificate, Certificate Verify, Finished",
    ],
    ...(t.ccs > t.sccs ? [[12, t.ccs, "c", "Change Cipher Spec"] as Rec] : []),
    [13, t.fin, "c", "Application Data", "Finished"],
  ]);
}

Deno.test("TLS 1.3: a client verifying the server's flight for 6.6 ms between its Change Cipher Spec and Finished is work, not a wait", () => {
  // chat-tls13 under load, TCP_NODELAY on both sides: the server's flight had arrived before the
  // client's (middlebox) Change Cipher Spec; the Finished follows once the flight is verified.
  const records = tls13({
    ch: 37.388,
    sh: 74.631,
    sccs: 77.368,
    flight: 77.387,
    ccs: 77.821,
    fin: 84.47,
  });
  const packets = segments([
    [4, 37.388, "c", 227, 1, 1],
    [5, 37.418, "s", 0, 1, 228],
    [6, 74.631, "s", 127, 1, 228],
    [7, 74.659, "c", 0, 228, 128],
    [8, 77.368, "s", 6, 128, 228],
    [9, 77.376, "c", 0, 228, 134],
    [10, 77.387, "s", 1393, 134, 228],
    [11, 77.391, "c", 0, 228, 1527],
    [12, 77.821, "c", 6, 228, 1527],
    [13, 84.47, "c", 74, 234, 1527],
  ]);
  const t = handshakeTiming(records, packets);
  assert.deepEqual(t.problems, []);
  assert.equal(t.longestGap.ms, 6.649);
  assert.ok(
    t.findings.some((f) => /\(TLS 1\.3: reported, not a rule\)$/.test(f)),
    t.findings.join("\n"),
  );
});

Deno.test("TLS 1.3: the server's flight held 41 ms after its Change Cipher Spec (before the fix) is caught by the ACK rule", () => {
  // The chat server before TCP_NODELAY, one of four TLS 1.3 handshakes in a capture.
  const records = tls13({
    ch: 372.541,
    sh: 373.676,
    sccs: 374.877,
    flight: 415.915,
    ccs: 374.758,
    fin: 421,
  });
  const packets = segments([
    [4, 372.541, "c", 227, 1, 1],
    [5, 372.574, "s", 0, 1, 228],
    [6, 373.676, "s", 127, 1, 228],
    [7, 374.758, "c", 6, 228, 128],
    [8, 374.877, "s", 6, 128, 234],
    [9, 415.891, "c", 0, 234, 134],
    [10, 415.915, "s", 1393, 134, 234],
    [11, 415.932, "c", 0, 234, 1527],
    [13, 421, "c", 74, 234, 1527],
  ]);
  const t = handshakeTiming(records, packets);
  assert.equal(t.problems.length, 1, t.problems.join("\n"));
  assert.match(
    t.problems[0]!,
    /server's segment in frame 10 \(1393 bytes\) left 0\.024 ms after the client's ACK in frame 9, which came 41\.014 ms after the data it acknowledges \(frame 8\)/,
  );
});

Deno.test("a refused connection is skipped; a capture with no completed handshake fails", () => {
  const refused = connection([
    [4, 1, "c", "Client Hello"],
    [6, 2, "s", "Alert (Fatal, Handshake Failure)"],
  ], 1);
  const alone = checkTimings([refused], []);
  assert.equal(alone.ok, false);
  assert.match(
    alone.report,
    /skip TCP stream 1, .*no completed handshake \(Client Hello, Alert \(Fatal, Handshake Failure\)\)/,
  );
  assert.match(alone.report, /FAIL no TLS handshake completed/);
  const both = checkTimings([FIXED.records, refused], FIXED.packets);
  assert.equal(both.ok, true, both.report);
  assert.equal(checkTimings([STALLED.records, refused], STALLED.packets).ok, false);
});
