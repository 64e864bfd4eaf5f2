/**
 * The per-packet check (lib/wireshark/tls_packets.ts) on packet lists: the seed's TLS 1.2 list
 * (pcap/expected/tls12-packets.json) passes, and so does the list the chat's raw twin shows (the
 * server's Change Cipher Spec and Finished as two packets back to back, frames and times from a
 * real capture); every variant with a packet split, removed or reordered fails. The same for the
 * TLS 1.3 shapes (tls13-packets.json). No tshark needed: the lists are given.
 */

import assert from "node:assert/strict";
import {
  type CaptureCheck,
  checkPacketConnections,
  type Expectation,
  loadExpectation,
  packetName,
  parseExpectation,
  PARTIAL_SEGMENT,
  type TcpSegment,
  type TlsConnection,
} from "../../lib/wireshark/mod.ts";

const CLIENT = 38728;
const SERVER = 36845;

/** One TCP packet: payload packets carry the Info column, pure ACKs carry none. */
type Packet = [frame: number, ms: number, from: "c" | "s", info?: string | undefined];

function connection(packets: Packet[], stream = 0): TlsConnection {
  return {
    stream,
    client: `127.0.0.1:${CLIENT}`,
    server: `127.0.0.1:${SERVER}`,
    records: packets.filter(([, , , info]) => info !== undefined).map((
      [frame, ms, from, info],
    ) => ({
      frame,
      time: ms / 1000,
      stream,
      from: from === "c" ? "client" : "server",
      wire: info!,
      content: info!,
    })),
  };
}

function segments(packets: Packet[], stream = 0): TcpSegment[] {
  return packets.map(([frame, ms, from, info]) => ({
    frame,
    time: ms / 1000,
    stream,
    srcPort: from === "c" ? CLIENT : SERVER,
    dstPort: from === "c" ? SERVER : CLIENT,
    len: info === undefined ? 0 : 100,
    seq: 1,
    ack: 1,
    control: false,
  }));
}

function check(
  packets: Packet[],
  expectation: Expectation,
  options: { joinFlights?: boolean } = {},
): CaptureCheck {
  return checkPacketConnections(
    [connection(packets)],
    [{ expectation }],
    segments(packets),
    options,
  );
}

const CH = "Client Hello";
const SH_FLIGHT = "Server Hello, Certificate, Server Key Exchange, Server Hello Done";
const CKE = "Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message";
const CCS = "Change Cipher Spec";
const EHM = "Encrypted Handshake Message";
const AD = "Application Data";
const ALERT = "Encrypted Alert";

/** The packets after the handshake in chat-tls12 (client's hello, /who, /quit; bye; alerts). */
const TLS12_AFTER: Packet[] = [
  [14, 120.714, "s", AD],
  [15, 123.757, "c", AD],
  [16, 124.903, "s", AD],
  [17, 126.345, "c", AD],
  [18, 127.155, "s", AD],
  [19, 129.256, "c", AD],
  [20, 130.526, "s", AD],
  [21, 130.936, "s", ALERT],
  [22, 130.990, "c"],
  [24, 132.706, "c", ALERT],
];

/** chat-tls12's raw twin as captured (pcap/captures/chat-tls12.raw.pcapng, frames and times). */
const MEASURED: Packet[] = [
  [4, 47.591, "c", CH],
  [5, 47.610, "s"],
  [6, 99.628, "s", SH_FLIGHT],
  [7, 99.690, "c"],
  [8, 104.974, "c", CKE],
  [9, 105.040, "s"],
  [10, 105.513, "s", CCS],
  [11, 105.749, "s", EHM],
  [12, 105.800, "c"],
  [13, 112.685, "c", AD],
  ...TLS12_AFTER,
];

/** The seed's list: the server's Change Cipher Spec and Finished in one packet. */
const SEED: Packet[] = [
  ...MEASURED.slice(0, 6),
  [10, 105.513, "s", `${CCS}, ${EHM}`],
  ...MEASURED.slice(8),
];

function frameOf(list: Packet[], frame: number): number {
  const i = list.findIndex((p) => p[0] === frame);
  assert.ok(i >= 0, `no frame ${frame}`);
  return i;
}

/** `list` with the packet of `frame` replaced by `by`. */
function replace(list: Packet[], frame: number, ...by: Packet[]): Packet[] {
  const i = frameOf(list, frame);
  return [...list.slice(0, i), ...by, ...list.slice(i + 1)];
}

/** `list` with the packets of frames `a` and `b` swapped (times and frame numbers stay). */
function swap(list: Packet[], a: number, b: number): Packet[] {
  const [i, j] = [frameOf(list, a), frameOf(list, b)];
  const [pi, pj] = [list[i]!, list[j]!];
  return list.map((p, k): Packet =>
    k === i ? [pi[0], pi[1], pj[2], pj[3]] : k === j ? [pj[0], pj[1], pi[2], pi[3]] : p
  );
}

function assertFails(result: CaptureCheck, pattern?: RegExp): void {
  assert.equal(result.ok, false, result.report);
  assert.match(result.report, /✗/);
  if (pattern) assert.match(result.report, pattern);
}

Deno.test("packets: the expected TLS 1.2 list is the seed's, Certificate Status and New Session Ticket aside", async () => {
  const tls12 = await loadExpectation("tls12-packets");
  // Seed 004's list as issue #14 gives it (and SPEC.md), packet by packet.
  assert.deepEqual(tls12.handshake.map((e) => [e.from, e.wire]), [
    ["client", "Client Hello"],
    ["server", "Server Hello, Certificate, Server Key Exchange, Server Hello Done"],
    ["client", "Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message"],
    ["server", "Change Cipher Spec, Encrypted Handshake Message"],
    ["client", "Application Data"],
  ]);
  // Only the server's Change Cipher Spec and Finished may come as a write flight.
  assert.deepEqual(tls12.handshake.map((e) => e.flight ?? false), [
    false,
    false,
    false,
    true,
    false,
  ]);
  assert.ok(tls12.seed?.some((l) => l.includes("Certificate Status")));
  assert.ok(tls12.seed?.some((l) => l.startsWith("New Session Ticket")));
  const notes = (tls12.notes ?? []).join("\n");
  assert.match(notes, /Certificate Status .* rustls server .* does not send it/);
  assert.match(notes, /New Session Ticket .* does not issue TLS 1.2 session tickets/);
  assert.match(notes, /one record per sendto\(\)/);
  for (const name of ["tls13-packets", "aes128-sha-refused-packets"]) {
    assert.equal((await loadExpectation(name)).name, name);
  }
});

Deno.test("packets: the seed's list passes, strictly too", async () => {
  const tls12 = await loadExpectation("tls12-packets");
  const loose = check(SEED, tls12);
  assert.ok(loose.ok, loose.report);
  const strict = check(SEED, tls12, { joinFlights: false });
  assert.ok(strict.ok, strict.report);
  assert.doesNotMatch(loose.report, /\(2 packets back to back/);
});

Deno.test("packets: the chat's capture passes, its server's Change Cipher Spec and Finished named as two packets back to back", async () => {
  const tls12 = await loadExpectation("tls12-packets");
  const result = check(MEASURED, tls12);
  assert.ok(result.ok, result.report);
  assert.match(
    result.report,
    /Change Cipher Spec, Encrypted Handshake Message \(2 packets back to back: frames 10 and 11, 0\.236 ms apart, nothing from the client in between\)/,
  );
  assert.match(result.report, /14 packets carrying TLS/);
  // Strictly packet by packet it is not the seed's list: the report says where.
  const strict = check(MEASURED, tls12, { joinFlights: false });
  assertFails(strict, /missing: server → client Change Cipher Spec, Encrypted Handshake Message/);
});

Deno.test("packets: a packet split in two fails", async (t) => {
  const tls12 = await loadExpectation("tls12-packets");
  const cases: Array<[string, Packet[], RegExp?]> = [
    [
      "the Client Hello in two segments",
      replace(SEED, 4, [3, 47.5, "c", PARTIAL_SEGMENT], [4, 47.591, "c", CH]),
      /\[TCP segment of a reassembled PDU\]/,
    ],
    [
      "the server's first flight in two segments",
      replace(SEED, 6, [6, 99.6, "s", PARTIAL_SEGMENT], [7, 99.628, "s", SH_FLIGHT]),
    ],
    [
      "the client's key exchange apart from its Change Cipher Spec and Finished, back to back",
      replace(
        SEED,
        8,
        [8, 104.974, "c", "Client Key Exchange"],
        [8.5, 104.990, "c", `${CCS}, ${EHM}`],
      ),
      /missing: client → server Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message/,
    ],
    [
      "the client's Change Cipher Spec apart from its Finished",
      replace(
        SEED,
        8,
        [8, 104.974, "c", "Client Key Exchange, Change Cipher Spec"],
        [8.5, 104.990, "c", EHM],
      ),
    ],
    [
      "the server's Change Cipher Spec and Finished with the client's ACK between them",
      replace(MEASURED, 11, [10.5, 105.6, "c"], [11, 105.749, "s", EHM]),
    ],
    [
      "the server's Change Cipher Spec and Finished 6 ms apart",
      replace(MEASURED, 11, [11, 111.6, "s", EHM]),
    ],
    [
      "the server's Finished itself in two segments",
      replace(MEASURED, 11, [11, 105.7, "s", PARTIAL_SEGMENT], [11.5, 105.749, "s", EHM]),
    ],
    [
      "the client's first Application Data in two segments",
      replace(SEED, 13, [13, 112.6, "c", PARTIAL_SEGMENT], [13.5, 112.685, "c", AD]),
    ],
  ];
  for (const [what, packets, pattern] of cases) {
    await t.step(what, () => assertFails(check(packets, tls12), pattern));
  }
});

Deno.test("packets: a packet removed fails, naming it", async (t) => {
  const tls12 = await loadExpectation("tls12-packets");
  // The report names the missing line; for the client's first Application Data it names the
  // server's Application Data that now comes first (the client's next one takes the place).
  const handshake: Array<[number, string]> = [
    [4, "missing: client → server Client Hello"],
    [6, `missing: server → client ${SH_FLIGHT}`],
    [8, `missing: client → server ${CKE}`],
    [10, `missing: server → client ${CCS}, ${EHM}`],
    [13, "unexpected in the handshake (frame 14): server → client Application Data"],
  ];
  for (const [frame, problem] of handshake) {
    await t.step(problem, () => {
      const removed = SEED.filter((p) => p[0] !== frame);
      const result = check(removed, tls12);
      assertFails(result);
      assert.ok(result.checks[0]!.problems.includes(problem), result.report);
    });
  }
  await t.step("the server's Finished alone (its Change Cipher Spec stays)", () => {
    assertFails(check(MEASURED.filter((p) => p[0] !== 11), tls12));
  });
  await t.step("every Application Data after the handshake", () => {
    const none = SEED.filter((p) => p[0] < 14 || p[3] !== AD);
    assertFails(check(none, tls12), /after the handshake: 0 × either way Application Data/);
  });
});

Deno.test("packets: packets reordered fail", async (t) => {
  const tls12 = await loadExpectation("tls12-packets");
  const cases: Array<[string, Packet[]]> = [
    ["the server's first flight before the Client Hello", swap(SEED, 4, 6)],
    ["the client's key exchange before the server's first flight", swap(SEED, 6, 8)],
    ["the server's Change Cipher Spec before the client's key exchange", swap(SEED, 8, 10)],
    ["the server's Finished before its Change Cipher Spec", swap(MEASURED, 10, 11)],
    ["the client's Application Data before the server's Finished", swap(SEED, 10, 13)],
    [
      "the client's Application Data between the server's Change Cipher Spec and Finished",
      [...MEASURED.slice(0, 7), [10.5, 105.6, "c", AD], ...MEASURED.slice(7, 9), ...TLS12_AFTER],
    ],
  ];
  for (const [what, packets] of cases) {
    await t.step(what, () => assertFails(check(packets, tls12)));
  }
  await t.step("a handshake packet after the handshake", () => {
    assertFails(
      check([...SEED, [30, 200, "s", SH_FLIGHT]], tls12),
      /not allowed after the handshake \(frame 30\)/,
    );
  });
});

const TLS13_AFTER: Packet[] = [
  [13, 89.817, "s", AD],
  [14, 94.224, "c", AD],
  [15, 104.588, "s", AD],
];

/** chat-tls13's raw twin, the four shapes seen or possible (frames and times from captures). */
const TLS13_SHAPES: Record<string, Packet[]> = {
  "the client's Change Cipher Spec first": [
    [4, 45.229, "c", CH],
    [6, 82.973, "s", "Server Hello"],
    [8, 83.870, "c", CCS],
    [9, 84.157, "s", CCS],
    [10, 84.324, "s", AD],
    [12, 89.615, "c", AD],
    ...TLS13_AFTER,
  ],
  "after the server's": [
    [4, 45.229, "c", CH],
    [6, 82.973, "s", "Server Hello"],
    [8, 83.870, "s", CCS],
    [9, 84.157, "c", CCS],
    [10, 84.324, "s", AD],
    [12, 89.615, "c", AD],
    ...TLS13_AFTER,
  ],
  "after the server's flight": [
    [4, 45.229, "c", CH],
    [6, 82.973, "s", "Server Hello"],
    [8, 83.870, "s", CCS],
    [9, 84.157, "s", AD],
    [10, 84.324, "c", CCS],
    [12, 89.615, "c", AD],
    ...TLS13_AFTER,
  ],
  "with its Finished": [
    [20, 311.626, "c", CH],
    [22, 312.227, "s", "Server Hello"],
    [24, 312.237, "s", CCS],
    [26, 312.258, "s", AD],
    [28, 316.417, "c", `${CCS}, ${AD}`],
    ...TLS13_AFTER,
  ],
};

Deno.test("packets: TLS 1.3, each shape the raw twin shows passes; split, removed or reordered fails", async (t) => {
  const tls13 = await loadExpectation("tls13-packets");
  for (const [what, packets] of Object.entries(TLS13_SHAPES)) {
    await t.step(`passes: ${what}`, () => {
      const result = check(packets, tls13);
      assert.ok(result.ok, result.report);
    });
  }
  const first = TLS13_SHAPES["the client's Change Cipher Spec first"]!;
  const last = TLS13_SHAPES["with its Finished"]!;
  const cases: Array<[string, Packet[]]> = [
    ["the client's Change Cipher Spec before the Server Hello", swap(first, 6, 8)],
    ["the server's flight before its Change Cipher Spec", swap(first, 9, 10)],
    ["the client's Finished before the server's flight", swap(first, 10, 12)],
    ["the server's Server Hello removed", first.filter((p) => p[0] !== 6)],
    ["the server's encrypted flight removed", first.filter((p) => p[0] !== 10)],
    ["the client's Change Cipher Spec removed", first.filter((p) => p[0] !== 8)],
    [
      "the Server Hello in two segments",
      replace(first, 6, [5, 82.9, "s", PARTIAL_SEGMENT], [6, 82.973, "s", "Server Hello"]),
    ],
    [
      "the server's Server Hello and Change Cipher Spec merged",
      [
        ...first.slice(0, 1),
        [6, 82.973, "s", `Server Hello, ${CCS}`],
        ...first.slice(2, 3),
        ...first.slice(4),
      ],
    ],
    [
      "the client's Finished and first Application Data merged",
      [
        ...last.slice(0, 4),
        [28, 316.417, "c", `${CCS}, ${AD}, ${AD}`],
        ...TLS13_AFTER.filter((p) => p[0] !== 14),
      ],
    ],
  ];
  for (const [what, packets] of cases) {
    await t.step(`fails: ${what}`, () => assertFails(check(packets, tls13)));
  }
});

Deno.test("packets: the Info column normalised; expected files with a bad flight or alternatives are refused", () => {
  assert.equal(packetName("TLSv1", "Client Hello (SNI=chat)"), "Client Hello");
  assert.equal(
    packetName("TLSv1.2", "Client Key Exchange, Change Cipher Spec, Encrypted Handshake Message"),
    CKE,
  );
  assert.equal(
    packetName(
      "TCP",
      "38728 → 36845 [PSH, ACK] Seq=1 Ack=1 Win=65536 Len=100 [TCP segment of a reassembled PDU]",
    ),
    PARTIAL_SEGMENT,
  );
  assert.equal(
    packetName("TCP", "38728 → 36845 [PSH, ACK] Seq=1 Ack=1 Len=5"),
    "[TCP payload, not TLS]",
  );
  const base = { name: "x", title: "x", after: [] };
  const parsed = parseExpectation(
    JSON.stringify({
      ...base,
      handshake: [{ from: "server", wire: "A, B", flight: true }],
      alternatives: [{ when: "w", handshake: [{ from: "client", wire: "C" }] }],
    }),
  );
  assert.equal(parsed.handshake[0]!.flight, true);
  assert.deepEqual(parsed.alternatives, [{
    when: "w",
    handshake: [{ from: "client", wire: "C" }],
  }]);
  const bad = (extra: Record<string, unknown>, why: RegExp) =>
    assert.throws(
      () =>
        parseExpectation(
          JSON.stringify({ ...base, handshake: [{ from: "client", wire: "A" }], ...extra }),
        ),
      why,
    );
  bad(
    { handshake: [{ from: "client", wire: "A", flight: "yes" }] },
    /flight must be true or false/,
  );
  bad({ alternatives: {} }, /alternatives must be a list/);
  bad(
    { alternatives: [{ handshake: [{ from: "client", wire: "A" }] }] },
    /alternatives\[0\]\.when/,
  );
  bad(
    { alternatives: [{ when: "w", handshake: [] }] },
    /alternatives\[0\]\.handshake must be a non-empty list/,
  );
});
