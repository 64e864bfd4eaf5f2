/**
 * The account rules on their own (lib/bank/accounts.ts), one refusal at a time with its reason: a
 * request id reused for another operation, a withdrawal over the balance, a deposit past the
 * largest balance. Nothing refused changes a balance.
 */

import assert from "node:assert/strict";
import { DatabaseSync } from "node:sqlite";
import { Accounts, MAX_BALANCE_CENTS, OperationError } from "../../lib/bank/mod.ts";
import { tempDir } from "../_fixtures/helpers.ts";

const C = "1155000901";

Deno.test("accounts: a request id reused for another amount or kind is refused, not replayed", async () => {
  await using dir = await tempDir("lab-accounts-");
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  const first = await accounts.apply({
    customer: C,
    requestId: "req-00001",
    kind: "deposit",
    amount: "5",
  });
  assert.equal(first.status === "applied" && first.balance, 500);
  for (
    const [kind, amount] of [["deposit", "6"], ["withdraw", "5"]] as const
  ) {
    await assert.rejects(
      () => accounts.apply({ customer: C, requestId: "req-00001", kind, amount }),
      (err: unknown) => {
        assert.ok(err instanceof OperationError, String(err));
        assert.equal(err.message, "Request id req-00001 was already used for deposit 5.00");
        return true;
      },
    );
  }
  assert.equal(accounts.balance(C), 500);
});

Deno.test("accounts: a withdrawal one cent over the balance is refused and changes nothing", async () => {
  await using dir = await tempDir("lab-accounts-");
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  await accounts.apply({ customer: C, requestId: "req-00001", kind: "deposit", amount: "5" });
  const over = await accounts.apply({
    customer: C,
    requestId: "req-00002",
    kind: "withdraw",
    amount: "5.01",
  });
  assert.deepEqual(over, {
    status: "refused",
    kind: "withdraw",
    amount: 501,
    reason: "Insufficient funds: balance 5.00, withdrawal 5.01",
    replayed: false,
  });
  assert.equal(accounts.balance(C), 500);
});

Deno.test("accounts: a deposit that would take the balance past its maximum is refused", async () => {
  await using dir = await tempDir("lab-accounts-");
  const path = `${dir.path}/accounts.db`;
  {
    using accounts = Accounts.open(path);
    accounts.open(C);
  }
  // A balance 1.00 short of the maximum, set directly (10^4 deposits would be slow).
  const db = new DatabaseSync(path);
  db.prepare("UPDATE accounts SET balance = ? WHERE customer = ?").run(MAX_BALANCE_CENTS - 100, C);
  db.close();
  using accounts = Accounts.open(path);
  const refused = await accounts.apply({
    customer: C,
    requestId: "req-00003",
    kind: "deposit",
    amount: "1.01",
  });
  assert.equal(refused.status, "refused");
  assert.equal(
    refused.status === "refused" && refused.reason,
    "Deposit refused: the balance would exceed 10000000000.00",
  );
  assert.equal(accounts.balance(C), MAX_BALANCE_CENTS - 100);
  const fits = await accounts.apply({
    customer: C,
    requestId: "req-00004",
    kind: "deposit",
    amount: "1",
  });
  assert.equal(fits.status === "applied" && fits.balance, MAX_BALANCE_CENTS);
});
