/** System 2: Alice enrols and banks with Bob, secure mode (STEP 1 Hello … STEP 6 records). */

import { caProtocol } from "../../lib/ca/mod.ts";
import { at, scenario } from "./harness.ts";
import { ALICE_SID, bank, enrol, issueServer, serveBob, startCa } from "./steps.ts";

export const BANK = scenario({
  name: "bank",
  title: "System 2: Alice banks with Bob (secure mode)",
  ports: ["ca", "bank"],
  capture: (p) => [p.ca, p.bank],
  actors: (p) => ({
    servers: { [p.ca]: "CUHK (CA)", [p.bank]: "Bob (bank)" },
    clients: { [p.ca]: "Alice", [p.bank]: "Alice" },
    byFirstMessage: { [caProtocol.label("crlRequest")]: "Bob (bank)" },
    order: ["Alice", "CUHK (CA)", "Bob (bank)"],
  }),
  labels: [
    caProtocol.label("csr"),
    caProtocol.label("certificate"),
    caProtocol.label("crlRequest"),
    caProtocol.label("crl"),
    bank("hello"),
    bank("hiBob"),
    bank("proveIt"),
    bank("proof"),
    bank("secret"),
    bank("record"),
  ],
  async run(ctx) {
    await startCa(ctx);
    await issueServer(ctx, "bank", `${ctx.dir}/bank`);
    await serveBob(ctx, {
      name: "Bob",
      port: ctx.ports.bank,
      dataDir: `${ctx.dir}/bank`,
      crl: true,
    });
    const home = await enrol(ctx, ALICE_SID);
    ctx.sink("* Alice: deposit 100.00, withdraw 25.50, check balance, exit");
    await ctx.actors.run("Alice", "actors/bank.ts", [
      "client",
      "--bank",
      at(ctx, "bank"),
      "--home",
      home,
    ], { stdin: "deposit 100.00\nwithdraw 25.50\nbalance\nexit\n" });
  },
});
