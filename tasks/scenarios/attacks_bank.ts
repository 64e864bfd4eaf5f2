/**
 * Trudy against the bank (system 2), seed mode then the default: bank-mitm (on the path between
 * Alice and Bob), bank-replay (Bob's recorded proof replayed to Alice) and cross-service (Trudy
 * plays Bob with Blackboard's key and certificate) and error-injection (Trudy replaces Bob's first
 * answer after the handshake with a cleartext error).
 */

import { Accounts } from "../../lib/bank/mod.ts";
import type { ActorMap } from "../../lib/wireshark/mod.ts";
import { bothHalves, halves, startTrudy } from "./attacks.ts";
import { check, checkVerdict } from "./checks.ts";
import {
  at,
  type Context,
  outcome,
  type Ports,
  prints,
  scenario,
  serverAt,
  via,
} from "./harness.ts";
import { ALICE_SID, bank, enrol, issueServer, serveBob, startCa } from "./steps.ts";

const BANK_ATTACK_PORTS = ["ca", "bankSeed", "trudySeed", "bank", "trudy"] as const;
type BankAttackPort = typeof BANK_ATTACK_PORTS[number];

/** The bank attacks' set-up: Bob in seed mode; the CA, Bob in secure mode and Alice enrolled. */
async function startBanks(ctx: Context<BankAttackPort>): Promise<{ home: string }> {
  await Promise.all([
    startCa(ctx),
    serveBob(ctx, {
      name: "Bob (seed)",
      seed: true,
      port: ctx.ports.bankSeed,
      dataDir: `${ctx.dir}/bank-seed`,
    }),
  ]);
  await issueServer(ctx, "bank", `${ctx.dir}/bank`);
  const [home] = await Promise.all([
    enrol(ctx, ALICE_SID),
    serveBob(ctx, { name: "Bob", port: ctx.ports.bank, dataDir: `${ctx.dir}/bank` }),
  ]);
  return { home };
}

/** Bob's stored balance for a customer, in cents, read from his accounts database. */
function storedBalance(ctx: Context, dataDir: string, customer: string): number {
  using accounts = Accounts.open(`${ctx.dir}/${dataDir}/accounts.db`);
  return accounts.balance(customer);
}

/** How many withdrawals Bob applied for a customer, read from his accounts database. */
function appliedWithdrawals(ctx: Context, dataDir: string, customer: string): number {
  using accounts = Accounts.open(`${ctx.dir}/${dataDir}/accounts.db`);
  return accounts.statement(customer)
    .filter((e) => e.kind === "withdraw" && e.status === "applied").length;
}

const bankAttackActors = (p: Ports<BankAttackPort>): ActorMap => ({
  servers: {
    [p.bankSeed]: "Bob (bank)",
    [p.bank]: "Bob (bank)",
    [p.trudySeed]: "Trudy",
    [p.trudy]: "Trudy",
  },
  clients: {
    [p.bankSeed]: "Trudy",
    [p.bank]: "Trudy",
    [p.trudySeed]: "Alice",
    [p.trudy]: "Alice",
  },
  order: ["Alice", "Trudy", "Bob (bank)"],
  sections: halves([p.bankSeed, p.trudySeed], [p.bank, p.trudy]),
});

export const ATTACK_BANK_MITM = scenario({
  name: "attack-bank-mitm",
  title: "Trudy, bank-mitm: on the path between Alice and Bob, seed mode then the default",
  ports: BANK_ATTACK_PORTS,
  capture: (p) => [p.bankSeed, p.trudySeed, p.bank, p.trudy],
  actors: bankAttackActors,
  labels: [
    bank("seedHello"),
    bank("seedHiBob"),
    bank("seedProveIt"),
    bank("seedProof"),
    bank("seedSecret"),
    bank("seedRecord"),
    bank("hello"),
    bank("hiBob"),
    bank("error"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Alice", "Trudy", "Bob (bank)"],
  marks: [
    {
      section: "seed",
      from: "Trudy",
      to: "Alice",
      label: "STEP 2 Hi, I'm Bob",
      note: "Trudy's own public key in place of Bob's",
    },
    {
      section: "seed",
      from: "Trudy",
      to: "Alice",
      label: "STEP 4 Bob's proof",
      note: "the proof signed with Trudy's key, not Bob's",
    },
    {
      section: "seed",
      from: "Trudy",
      to: "Bob (bank)",
      label: "STEP 6 record",
      note: "Alice's deposit 10.00 → 900.00, re-encrypted by Trudy for Bob",
    },
    {
      section: "seed",
      from: "Trudy",
      to: "Alice",
      label: "STEP 6 record",
      note: "Bob's reply rewritten: Alice is shown 10.00",
    },
    {
      section: "default",
      from: "Trudy",
      to: "Alice",
      label: "STEP 2 Hi, I'm Bob",
      note: "Trudy's own certificate and key in place of Bob's",
    },
  ],
  async run(ctx) {
    const { home } = await startBanks(ctx);

    const bankSeed = serverAt(ctx, ctx.ports.bankSeed);
    let trudy = await startTrudy(
      ctx,
      "seed",
      "bank-mitm",
      [
        "--amount",
        "900.00",
      ],
      ctx.ports.trudySeed,
      bankSeed,
      "--bank",
    );
    ctx.sink("* Alice (seed mode): deposit 10.00, balance, exit");
    const seen = await ctx.actors.run("Alice", "actors/bank.ts", [
      "client",
      "--protocol",
      "seed",
      "--bank",
      via(ctx, ctx.ports.trudySeed, bankSeed),
      "--customer",
      "alice",
    ], { stdin: "deposit 10.00\nbalance\nexit\n" });
    checkVerdict(ctx, "seed", await outcome(trudy), {
      reason: "seed-key-accepted",
      says: "ATTACK SUCCEEDED (a deposit of 10.00 changed into 900.00)",
    });
    const seedBalance = storedBalance(ctx, "bank-seed", "seed/alice");
    check(
      ctx,
      "seed: Bob stored a balance of 900.00 for alice; Alice was shown 10.00",
      seedBalance === 90_000 && /balance 10\.00$/m.test(seen) && !/900/.test(seen),
      `Bob's balance ${seedBalance} cents; Alice saw: ${seen.trim().replaceAll("\n", " / ")}`,
    );

    const bank = serverAt(ctx, ctx.ports.bank);
    trudy = await startTrudy(
      ctx,
      "default",
      "bank-mitm",
      [
        "--amount",
        "900.00",
      ],
      ctx.ports.trudy,
      bank,
      "--bank",
    );
    ctx.sink("* Alice (secure mode): deposit 10.00");
    const alice = await outcome(ctx.actors.spawn("Alice", "actors/bank.ts", [
      "client",
      "--bank",
      via(ctx, ctx.ports.trudy, bank),
      "--home",
      home,
      "deposit",
      "10.00",
    ]));
    checkVerdict(ctx, "default", await outcome(trudy), {
      reason: "key-refused",
      says: "ATTACK FAILED: Alice refused Trudy's certificate at STEP 2",
    });
    const balance = storedBalance(ctx, "bank", ALICE_SID);
    check(
      ctx,
      "default: Alice stopped at STEP 2 (certificate not issued by the pinned root), Bob's balance 0",
      alice.code !== 0 && /STEP 2 .*not issued by the pinned root/.test(alice.stderr) &&
        balance === 0,
      `Alice exit ${alice.code}; Bob's balance ${balance} cents`,
    );
  },
});

export const ATTACK_BANK_REPLAY = scenario({
  name: "attack-bank-replay",
  title: "Trudy, bank-replay: Bob's recorded proof replayed to Alice, seed mode then the default",
  ports: BANK_ATTACK_PORTS,
  capture: (p) => [p.bankSeed, p.trudySeed, p.bank, p.trudy],
  actors: bankAttackActors,
  labels: [
    bank("seedHello"),
    bank("seedHiBob"),
    bank("seedProveIt"),
    bank("seedProof"),
    bank("seedSecret"),
    bank("hello"),
    bank("hiBob"),
    bank("proveIt"),
    bank("proof"),
    bank("error"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Alice", "Trudy", "Bob (bank)"],
  marks: bothHalves({
    from: "Trudy",
    to: "Alice",
    label: "STEP 4 Bob's proof",
    note: "Bob's proof from Trudy's own earlier session with him, replayed",
  }),
  async run(ctx) {
    const { home } = await startBanks(ctx);
    const halves = [
      {
        half: "seed" as const,
        bank: ctx.ports.bankSeed,
        port: ctx.ports.trudySeed,
        alice: ["--protocol", "seed", "--customer", "alice"],
        expected: {
          reason: "replay-accepted" as const,
          says: "ATTACK SUCCEEDED (Alice took Trudy for Bob)",
        },
        victim: /STEP 5 Alice's secret: sent/,
        seen: "seed: Alice accepted the replayed proof and sent her secret (STEP 5) to Trudy",
      },
      {
        half: "default" as const,
        bank: ctx.ports.bank,
        port: ctx.ports.trudy,
        alice: ["--home", home],
        expected: {
          reason: "replay-refused" as const,
          says: "ATTACK FAILED: Alice refused the replayed proof at STEP 4 (her nonce)",
        },
        victim: /STEP 4 Bob's proof failed: .*Alice's nonce is not in it/,
        seen: "default: Alice stopped at STEP 4 and sent no secret",
      },
    ];
    for (const h of halves) {
      const trudy = await startTrudy(
        ctx,
        h.half,
        "bank-replay",
        [
          "--protocol",
          h.half,
        ],
        h.port,
        serverAt(ctx, h.bank),
        "--bank",
      );
      ctx.sink(`* Alice (${h.half} mode) connects to "Bob" and asks for her balance`);
      const run = ctx.actors.spawn("Alice", "actors/bank.ts", [
        "client",
        ...h.alice,
        "--bank",
        via(ctx, h.port, serverAt(ctx, h.bank)),
        "balance",
      ]);
      checkVerdict(ctx, h.half, await outcome(trudy), h.expected);
      if (h.half === "seed") {
        // Trudy hung up with Alice's secret; Alice's retries of her balance cannot reach Bob.
        await prints(run, /STEP 5 Alice's secret: sent/);
        ctx.sink("* Trudy has hung up with Alice's secret: Alice is stopped");
        run.kill("SIGTERM");
      }
      const alice = await outcome(run);
      check(
        ctx,
        h.seen,
        h.victim.test(alice.stderr) &&
          (h.half === "seed" || !/STEP 5 Alice's secret: sent/.test(alice.stderr)),
        alice.stderr.trim().split("\n").slice(-2).join(" / "),
      );
    }
  },
});

export const ATTACK_CROSS_SERVICE = scenario({
  name: "attack-cross-service",
  title:
    "Trudy, cross-service: Bob played with Blackboard's key and certificate, seed mode then the default",
  ports: ["ca", "trudySeed", "trudy"],
  capture: (p) => [p.trudySeed, p.trudy],
  actors: (p) => ({
    servers: { [p.trudySeed]: "Trudy", [p.trudy]: "Trudy" },
    clients: { [p.trudySeed]: "Alice", [p.trudy]: "Alice" },
    order: ["Alice", "Trudy"],
    sections: halves([p.trudySeed], [p.trudy]),
  }),
  labels: [
    bank("seedHello"),
    bank("seedHiBob"),
    bank("seedProveIt"),
    bank("seedProof"),
    bank("seedSecret"),
    bank("seedRecord"),
    bank("hello"),
    bank("hiBob"),
    bank("error"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Alice", "Trudy"],
  marks: [
    {
      section: "seed",
      from: "Trudy",
      to: "Alice",
      label: "STEP 2 Hi, I'm Bob",
      note: "Blackboard's stolen key in place of Bob's",
    },
    {
      section: "default",
      from: "Trudy",
      to: "Alice",
      label: "STEP 2 Hi, I'm Bob",
      note: "Blackboard's stolen certificate (it names blackboard) in place of Bob's",
    },
  ],
  async run(ctx) {
    await startCa(ctx);
    // Blackboard's identity, as Trudy took it from the Blackboard host: the CA's, serverAuth,
    // SAN 127.0.0.1, but it names the service `blackboard`.
    await issueServer(ctx, "blackboard", `${ctx.dir}/blackboard`);
    const home = await enrol(ctx, ALICE_SID);
    const stolen = [
      "--cert",
      `${ctx.dir}/blackboard/blackboard.cer`,
      "--key",
      `${ctx.dir}/blackboard/blackboard.key`,
      "--ca-cert",
      `${ctx.dir}/ca/cuhk.cer`,
    ];

    // No real Bob here: on the netlab, Alice dials the bank host's address (on Trudy's port),
    // and Trudy, the router, answers in its place.
    const bobSeed = { host: ctx.place.address("bank"), port: ctx.ports.trudySeed };
    const bob = { host: ctx.place.address("bank"), port: ctx.ports.trudy };
    let trudy = await startTrudy(
      ctx,
      "seed",
      "cross-service",
      [
        "--protocol",
        "seed",
        ...stolen,
      ],
      ctx.ports.trudySeed,
      bobSeed,
    );
    ctx.sink(`* Alice (seed mode) connects to "Bob" at Trudy's port: deposit 10.00`);
    const seen = await outcome(ctx.actors.spawn("Alice", "actors/bank.ts", [
      "client",
      "--protocol",
      "seed",
      "--bank",
      via(ctx, ctx.ports.trudySeed, bobSeed),
      "--customer",
      "alice",
      "deposit",
      "10.00",
    ]));
    const seedTrudy = await outcome(trudy);
    checkVerdict(ctx, "seed", seedTrudy, {
      reason: "cross-service-accepted",
      says: "ATTACK SUCCEEDED (Alice took Blackboard's key as Bob's)",
    });
    check(
      ctx,
      "seed: Alice took Blackboard's key as Bob's, sent her secret (STEP 5) and banked with Trudy",
      seen.code === 0 && /STEP 5 Alice's secret: sent/.test(seen.stderr) &&
        /Trudy read Alice's Deposit : 1 10\.00/.test(seedTrudy.stderr),
      `Alice exit ${seen.code}: ${seen.stderr.trim().split("\n").slice(-2).join(" / ")}`,
    );

    trudy = await startTrudy(
      ctx,
      "default",
      "cross-service",
      [
        "--protocol",
        "default",
        // The CA's public CRL, which her Bob staples as the real Bob does.
        "--ca",
        at(ctx, "ca"),
        ...stolen,
      ],
      ctx.ports.trudy,
      bob,
    );
    ctx.sink(
      `* Alice (default) connects to "Bob" at ${via(ctx, ctx.ports.trudy, bob)}: deposit 10.00`,
    );
    const alice = await outcome(ctx.actors.spawn("Alice", "actors/bank.ts", [
      "client",
      "--bank",
      via(ctx, ctx.ports.trudy, bob),
      "--home",
      home,
      "deposit",
      "10.00",
    ]));
    const defTrudy = await outcome(trudy);
    checkVerdict(ctx, "default", defTrudy, {
      reason: "wrong-service-refused",
      says:
        "ATTACK FAILED: Alice refused the certificate at STEP 2 (it names blackboard, not bank)",
    });
    check(
      ctx,
      "default: Alice stopped at STEP 2 (the certificate does not name bank), sent no secret",
      alice.code !== 0 &&
        /STEP 2 Hi, I'm Bob failed: .*not issued for bank/.test(alice.stderr) &&
        !/STEP [35]/.test(alice.stderr) && !/Trudy read/.test(defTrudy.stderr),
      `Alice exit ${alice.code}: ${alice.stderr.trim().split("\n").slice(-2).join(" / ")}`,
    );
  },
});

export const ATTACK_ERROR_INJECTION = scenario({
  name: "attack-error-injection",
  title:
    "Trudy, error-injection: Bob's answer to a withdrawal replaced with a cleartext error, seed mode then the default",
  ports: BANK_ATTACK_PORTS,
  capture: (p) => [p.bankSeed, p.trudySeed, p.bank, p.trudy],
  actors: bankAttackActors,
  labels: [
    bank("seedHello"),
    bank("seedHiBob"),
    bank("seedProveIt"),
    bank("seedProof"),
    bank("seedSecret"),
    bank("seedRecord"),
    bank("hello"),
    bank("hiBob"),
    bank("proveIt"),
    bank("proof"),
    bank("secret"),
    bank("record"),
    // Trudy's forged refusal, in the clear, in place of Bob's answer.
    bank("error"),
  ],
  trudyPorts: (p) => [p.trudySeed, p.trudy],
  path: ["Alice", "Trudy", "Bob (bank)"],
  marks: bothHalves({
    from: "Trudy",
    to: "Alice",
    label: "error",
    note: "forged by Trudy: a cleartext error in place of Bob's reply",
  }),
  async run(ctx) {
    // 10.00 in each account before Bob starts, credited by the bank's operator straight in his
    // database: no packet, so every client of Bob's port in the capture is Trudy.
    for (const [dataDir, customer] of [["bank-seed", "seed/alice"], ["bank", ALICE_SID]]) {
      await Deno.mkdir(`${ctx.dir}/${dataDir}`, { recursive: true });
      using accounts = Accounts.open(`${ctx.dir}/${dataDir}/accounts.db`);
      await accounts.apply({
        customer: customer!,
        requestId: "operator-credit",
        kind: "deposit",
        amount: "10.00",
      });
    }
    ctx.sink(
      "* the bank's operator credits 10.00 to alice (seed) and to Alice (default) in Bob's database",
    );
    const { home } = await startBanks(ctx);
    const halves = [
      {
        half: "seed" as const,
        bank: ctx.ports.bankSeed,
        port: ctx.ports.trudySeed,
        dataDir: "bank-seed",
        customer: "seed/alice",
        alice: ["--protocol", "seed", "--customer", "alice"],
        expected: {
          reason: "forged-error-believed" as const,
          says: "ATTACK SUCCEEDED (Alice believed the forged refusal)",
        },
      },
      {
        half: "default" as const,
        bank: ctx.ports.bank,
        port: ctx.ports.trudy,
        dataDir: "bank",
        customer: ALICE_SID,
        alice: ["--home", home],
        expected: {
          reason: "forged-error-not-believed" as const,
          says: "ATTACK FAILED: the cleartext error was not believed, the withdrawal resent",
        },
      },
    ];
    for (const h of halves) {
      const trudy = await startTrudy(
        ctx,
        h.half,
        "error-injection",
        [],
        h.port,
        serverAt(ctx, h.bank),
        "--bank",
      );
      ctx.sink(`* Alice (${h.half} mode) withdraws 5.00 through Trudy's port`);
      const alice = await outcome(ctx.actors.spawn("Alice", "actors/bank.ts", [
        "client",
        ...h.alice,
        "--bank",
        via(ctx, h.port, serverAt(ctx, h.bank)),
        "withdraw",
        "5.00",
      ]));
      checkVerdict(ctx, h.half, await outcome(trudy), h.expected);
      const balance = storedBalance(ctx, h.dataDir, h.customer);
      const withdrawals = appliedWithdrawals(ctx, h.dataDir, h.customer);
      const stored = `Bob's balance ${balance} cents, ${withdrawals} withdrawal(s) applied`;
      const said = `Alice exit ${alice.code}: ${
        alice.stderr.trim().split("\n").slice(-2).join(" / ")
      }; ${stored}`;
      if (h.half === "seed") {
        check(
          ctx,
          "seed: Alice was told 'Insufficient funds' though Bob applied her withdrawal (balance 5.00)",
          alice.code !== 0 && /^bank: Insufficient funds$/m.test(alice.stderr) &&
            balance === 500 && withdrawals === 1,
          said,
        );
      } else {
        check(
          ctx,
          "default: Alice did not believe the cleartext error, resent the same request; Bob applied the withdrawal exactly once (balance 5.00)",
          alice.code === 0 && /applied once/.test(alice.stdout) &&
            /a cleartext error arrived after the handshake/.test(alice.stderr) &&
            balance === 500 && withdrawals === 1,
          said,
        );
      }
    }
  },
});
