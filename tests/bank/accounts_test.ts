import assert from "node:assert/strict";
import {
  Accounts,
  AmountError,
  formatCents,
  MAX_AMOUNT_CENTS,
  OperationError,
  parseAmount,
} from "../../lib/bank/mod.ts";
import { DatabaseSync } from "node:sqlite";
import { tempDir } from "../_fixtures/helpers.ts";

Deno.test("amounts parse to integer cents", () => {
  assert.equal(parseAmount("10"), 1000);
  assert.equal(parseAmount("10.5"), 1050);
  assert.equal(parseAmount("10.50"), 1050);
  assert.equal(parseAmount("0.01"), 1);
  assert.equal(parseAmount("7.25"), 725);
  assert.equal(parseAmount("999999.99"), MAX_AMOUNT_CENTS - 1);
  // 0.1 + 0.2 style float error cannot happen: 0.29 is exactly 29 cents.
  assert.equal(parseAmount("0.29"), 29);
});

Deno.test("hostile amounts are refused with the reason", () => {
  const cases: [string, RegExp][] = [
    ["-5", /must be positive/],
    ["0", /must be positive/],
    ["0.00", /must be positive/],
    ["1e9", /not a number/],
    ["1000000000", /must be under 1000000\.00/],
    ["1000000", /must be under/],
    ["12.345", /at most two decimals/],
    ["abc", /not a number/],
    ["", /empty/],
    ["   ", /empty/],
    ["+5", /not a number/],
    ["5.", /not a number/],
    [".5", /not a number/],
    ["0x10", /not a number/],
    ["Infinity", /not a number/],
    ["NaN", /not a number/],
    ["1".repeat(400), /not a number/],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseAmount(text), (err: unknown) => {
      assert.ok(err instanceof AmountError, `${text}: ${err}`);
      assert.match(err.message, reason, text);
      return true;
    });
  }
});

Deno.test("amounts: only the grammar, nothing around it (spaces, NBSP, line breaks, other digits)", () => {
  // Each of these once parsed as 5.00 (or 7.25): the parser trimmed before matching.
  const cases: [string, RegExp][] = [
    [" 5 ", /spaces or line breaks around the number/],
    [" 7.25 ", /spaces or line breaks around the number/],
    ["5 ", /spaces or line breaks/],
    [" 5", /spaces or line breaks/],
    ["\u00a05", /spaces or line breaks/],
    ["5\u00a0", /spaces or line breaks/],
    ["5\n", /spaces or line breaks/],
    ["5\r\n", /spaces or line breaks/],
    ["\t5", /spaces or line breaks/],
    ["5\u2028", /spaces or line breaks/],
    ["\ufeff5", /spaces or line breaks/],
    ["5 .00", /not a number/],
    ["5\u200b", /not a number/],
    ["\u0665", /not a number/], // ARABIC-INDIC DIGIT FIVE
    ["\uff15", /not a number/], // FULLWIDTH DIGIT FIVE
    ["5,00", /not a number/],
  ];
  for (const [text, reason] of cases) {
    assert.throws(() => parseAmount(text), (err: unknown) => {
      assert.ok(err instanceof AmountError, `${JSON.stringify(text)}: ${err}`);
      assert.match(err.message, reason, JSON.stringify(text));
      // The amount is shown through printable(): no raw line break reaches a log.
      assert.doesNotMatch(err.message, /[\n\r\u2028]/, JSON.stringify(text));
      return true;
    });
  }
  // What the grammar allows still parses.
  assert.equal(parseAmount("005"), 500);
  assert.equal(parseAmount("5.0"), 500);
});

Deno.test("cents format with two decimals", () => {
  assert.equal(formatCents(0), "0.00");
  assert.equal(formatCents(5), "0.05");
  assert.equal(formatCents(1050), "10.50");
  assert.equal(formatCents(123456789), "1234567.89");
});

Deno.test("accounts: deposit, withdraw, no overdraft, statement", async () => {
  await using dir = await tempDir();
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  const c = "1155000001";
  assert.equal(accounts.open(c), 0);
  const d = await accounts.apply({
    customer: c,
    requestId: "req-000001",
    kind: "deposit",
    amount: "10.50",
  });
  assert.deepEqual(d, {
    status: "applied",
    kind: "deposit",
    amount: 1050,
    balance: 1050,
    replayed: false,
  });
  const w = await accounts.apply({
    customer: c,
    requestId: "req-000002",
    kind: "withdraw",
    amount: "3",
  });
  assert.equal(w.status, "applied");
  assert.equal(accounts.balance(c), 750);
  const over = await accounts.apply({
    customer: c,
    requestId: "req-000003",
    kind: "withdraw",
    amount: "7.51",
  });
  assert.equal(over.status, "refused");
  assert.match(over.status === "refused" ? over.reason : "", /Insufficient funds: balance 7\.50/);
  assert.equal(accounts.balance(c), 750);
  // Exactly the balance is allowed, to zero.
  await accounts.apply({ customer: c, requestId: "req-000004", kind: "withdraw", amount: "7.50" });
  assert.equal(accounts.balance(c), 0);
  const st = accounts.statement(c, 10);
  assert.deepEqual(st.map((e) => [e.kind, e.amount, e.status, e.balance]), [
    ["withdraw", 750, "applied", 0],
    ["withdraw", 751, "refused", 750],
    ["withdraw", 300, "applied", 750],
    ["deposit", 1050, "applied", 1050],
  ]);
  // Accounts are separate.
  assert.equal(accounts.balance("1155000002"), 0);
});

Deno.test("accounts: a retried request id is applied once and returns the original result", async () => {
  await using dir = await tempDir();
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  const c = "1155000001";
  const first = await accounts.apply({
    customer: c,
    requestId: "retry-0001",
    kind: "deposit",
    amount: "5",
  });
  const again = await accounts.apply({
    customer: c,
    requestId: "retry-0001",
    kind: "deposit",
    amount: "5",
  });
  assert.equal(first.replayed, false);
  assert.deepEqual(again, { ...first, replayed: true });
  assert.equal(accounts.balance(c), 500);
  // A refused withdrawal stays refused on retry, even if funds arrived meanwhile.
  const refused = await accounts.apply({
    customer: c,
    requestId: "retry-0002",
    kind: "withdraw",
    amount: "50",
  });
  assert.equal(refused.status, "refused");
  await accounts.apply({ customer: c, requestId: "retry-0003", kind: "deposit", amount: "100" });
  const retried = await accounts.apply({
    customer: c,
    requestId: "retry-0002",
    kind: "withdraw",
    amount: "50",
  });
  assert.equal(retried.status, "refused");
  assert.equal(retried.replayed, true);
  assert.equal(accounts.balance(c), 10500);
  // The same id for another operation is refused; another customer may use the same id.
  await assert.rejects(
    () => accounts.apply({ customer: c, requestId: "retry-0001", kind: "deposit", amount: "6" }),
    /already used for deposit 5\.00/,
  );
  const other = await accounts.apply({
    customer: "1155000002",
    requestId: "retry-0001",
    kind: "deposit",
    amount: "6",
  });
  assert.equal(other.status === "applied" && other.balance, 600);
});

Deno.test("accounts: bad amounts and request ids never reach the database", async () => {
  await using dir = await tempDir();
  using accounts = Accounts.open(`${dir.path}/accounts.db`);
  for (const amount of ["-5", "0", "1e9", "12.345", "abc", ""]) {
    await assert.rejects(
      () => accounts.apply({ customer: "c", requestId: "bad-amount-1", kind: "deposit", amount }),
      OperationError,
    );
  }
  for (const id of ["", "short", "x".repeat(65), "has space 123", "semi;colon1"]) {
    await assert.rejects(
      () => accounts.apply({ customer: "c", requestId: id, kind: "deposit", amount: "1" }),
      /Invalid request id/,
    );
  }
  assert.deepEqual(accounts.statement("c"), []);
});

Deno.test("accounts survive reopening (committed operations are durable)", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/accounts.db`;
  {
    using a = Accounts.open(path);
    await a.apply({ customer: "c", requestId: "durable-01", kind: "deposit", amount: "12.34" });
  }
  using b = Accounts.open(path);
  assert.equal(b.balance("c"), 1234);
  const again = await b.apply({
    customer: "c",
    requestId: "durable-01",
    kind: "deposit",
    amount: "12.34",
  });
  assert.equal(again.replayed, true);
  assert.equal(b.balance("c"), 1234);
});

Deno.test("group commit: operations that arrive together share one commit, in order; a reused id is refused alone; each is in the file once answered", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/accounts.db`;
  using accounts = Accounts.open(path);
  await accounts.apply({ customer: "c", requestId: "group-0000", kind: "deposit", amount: "1" });
  const before = accounts.commits;
  const ops = [];
  for (let i = 1; i <= 20; i++) {
    // Operation 10 reuses operation 5's id for another amount: refused, rolled back alone.
    const requestId = i === 10 ? "group-0005" : `group-${String(i).padStart(4, "0")}`;
    const amount = i === 10 ? "2" : "1";
    ops.push(accounts.apply({ customer: "c", requestId, kind: "deposit", amount }));
  }
  // A second database connection sees none of them before the group is committed…
  const outside = new DatabaseSync(path);
  const count = () =>
    (outside.prepare("SELECT count(*) AS n FROM operations").get() as { n: number }).n;
  assert.equal(count(), 1);
  const settled = await Promise.allSettled(ops);
  // …and all of them (but the refused one) once any is answered.
  assert.equal(count(), 20);
  outside.close();
  const after = accounts.commits;
  assert.equal(after.groups - before.groups, 1, "one commit for the 20 operations");
  assert.equal(after.operations - before.operations, 20);
  const balances = settled.map((s) =>
    s.status === "fulfilled" && s.value.status === "applied" ? s.value.balance : s.status
  );
  assert.deepEqual(balances, [
    ...[200, 300, 400, 500, 600, 700, 800, 900, 1000],
    "rejected",
    ...[1100, 1200, 1300, 1400, 1500, 1600, 1700, 1800, 1900, 2000],
  ]);
  const refused = settled[9]!;
  assert.ok(refused.status === "rejected" && refused.reason instanceof OperationError);
  assert.equal(accounts.balance("c"), 2000);
});

Deno.test("group commit: closing the accounts commits what is pending, so an accepted operation is not lost", async () => {
  await using dir = await tempDir();
  const path = `${dir.path}/accounts.db`;
  const accounts = Accounts.open(path);
  const pending = accounts.apply({
    customer: "c",
    requestId: "closing-01",
    kind: "deposit",
    amount: "2.50",
  });
  accounts.close();
  const result = await pending;
  assert.equal(result.status === "applied" && result.balance, 250);
  await assert.rejects(
    () => accounts.apply({ customer: "c", requestId: "closing-02", kind: "deposit", amount: "1" }),
    /closed/,
  );
  using reopened = Accounts.open(path);
  assert.equal(reopened.balance("c"), 250);
});
