/**
 * A refusal forged during the handshake of a reconnection is not the outcome of a request already
 * sent (review finding): Trudy drops Bob's authenticated answer to a withdrawal, then answers
 * Alice's reconnection with a cleartext "Insufficient funds". Alice keeps retrying with the same
 * request id, and Bob applies the withdrawal exactly once.
 */

import assert from "node:assert/strict";
import { BankClient, bankProtocol } from "../../lib/bank/mod.ts";
import { startRelay } from "../../lib/net/mod.ts";
import { aliceOptions, startBank } from "../_fixtures/bank.ts";
import { memoryLog, TestPki } from "../_fixtures/helpers.ts";

const ALICE = "1155000001";
const forged = () => bankProtocol.encode("error", { reason: "Insufficient funds" });

Deno.test("a cleartext refusal in a reconnection's handshake is retried, not believed", async () => {
  await using pki = await TestPki.start();
  const alice = await pki.student(ALICE);
  await using bank = await startBank(pki);
  const { log } = memoryLog("Alice");
  // Alice's account holds 10.00 (a session straight to Bob).
  const direct = await BankClient.connect(aliceOptions(pki, alice, bank.port, log));
  assert.equal((await direct.deposit("10.00")).ok, true);
  direct.close();

  // Trudy: on the first connection, Bob's answer to the withdrawal becomes a cleartext error; on
  // the second, "Hi, I'm Bob" does; the third passes untouched.
  const requestSent = new Set<number>();
  await using relay = startRelay({
    upstream: { hostname: "127.0.0.1", port: bank.port },
    log: memoryLog("Trudy").log,
    onFrame: (direction, frame, session) => {
      const msg = bankProtocol.decode(frame);
      if (session.id === 1) {
        if (direction === "toServer" && msg.type === "record") requestSent.add(session.id);
        if (direction === "toClient" && msg.type === "record" && requestSent.has(session.id)) {
          return forged();
        }
      }
      if (session.id === 2 && direction === "toClient" && msg.type === "hiBob") return forged();
      return frame;
    },
  });
  const client = new BankClient(aliceOptions(pki, alice, relay.port, log, { retryForMs: 20_000 }));
  try {
    const outcome = await client.withdraw("5.00", "req-forged-1");
    assert.equal(outcome.ok, true, JSON.stringify(outcome));
    assert.ok(client.reconnects >= 2, `reconnected ${client.reconnects} times`);
  } finally {
    client.close();
  }
  // Applied exactly once: 10.00 - 5.00.
  assert.equal(bank.accounts.balance(ALICE), 500);
});
