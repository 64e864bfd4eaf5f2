/**
 * bank-mitm: Trudy on the path between Alice and Bob substitutes her own public key for Bob's.
 *
 * Seed mode (`--protocol seed`): Bob's key arrives raw and unauthenticated, so Alice takes
 * Trudy's. Trudy forges the proof (her signature over the fixed sentence verifies with her key),
 * decrypts Alice's secret (textbook RSA to Trudy's key), encrypts it again to Bob's real key so Bob
 * sees nothing wrong, then reads every record (AES-256-ECB under the secret), changes a deposit's
 * amount on its way to Bob, and rewrites Bob's replies so that Alice is shown what she asked for.
 *
 * Secure mode (the default): `Hi, I'm Bob` carries a certificate that Alice verifies against the
 * pinned root. Trudy's certificate (her own key, her own CA, Bob's name and address) is refused at
 * STEP 2 and Alice tells Trudy why, in the clear, before she hangs up.
 */

import {
  type AttackServer,
  type ConnectionAttack,
  startRelayAttack,
  type Verdict,
} from "./attack.ts";
import {
  BANK_MAX_FRAME,
  bankOps,
  bankProtocol,
  formatCents,
  parseAmount,
  SEED_SENTENCE,
  SeedRecords,
} from "../bank/mod.ts";
import { errorMessage, type HostPort, type StepLog } from "../runtime/mod.ts";
import {
  insecureTextbookRsaDecrypt,
  insecureTextbookRsaEncrypt,
  sha256,
  type TextbookRsaKey,
  textbookRsaPrivateKey,
  textbookRsaPublicKey,
  toBytes,
  toHex,
} from "../crypto/mod.ts";
import {
  type Certificate,
  createRoot,
  exportPrivateKeyPem,
  importSigningKey,
  issueCertificate,
  signRsa,
} from "../pki/mod.ts";

/** Trudy's key pair, as she uses it in either mode. */
export interface TrudyBankKeys {
  /** SubjectPublicKeyInfo DER: what she puts in seed mode's `Hi, I'm Bob`. */
  publicKey: Uint8Array;
  /** Her signature over the seed's fixed sentence: a proof that verifies with her key. */
  seedProof: Uint8Array;
  /** For textbook-RSA decryption of Alice's secret. */
  decryptKey: TextbookRsaKey;
  /** A certificate for Bob's name and address with her key, issued by her own CA. */
  certificate: Certificate;
}

/** Makes Trudy's keys: an RSA key of her own and a certificate from a CA of her own. */
export async function makeTrudyBankKeys(
  options: { bobName?: string; bobIp?: string } = {},
): Promise<TrudyBankKeys> {
  const ca = await createRoot({ bits: 2048, name: "CN=Trudy Root CA" });
  const spki = new Uint8Array(await crypto.subtle.exportKey("spki", ca.keys.publicKey));
  const pem = await exportPrivateKeyPem(ca.keys.privateKey);
  const name = options.bobName ?? "bank";
  const certificate = await issueCertificate({
    publicKey: spki,
    profile: {
      kind: "server",
      commonName: name,
      dnsNames: [name],
      ipAddresses: [options.bobIp ?? "127.0.0.1"],
    },
    issuer: ca.cert,
    issuerKey: ca.keys.privateKey,
  });
  return {
    publicKey: spki,
    seedProof: await signRsa(await importSigningKey(pem), toBytes(SEED_SENTENCE)),
    decryptKey: textbookRsaPrivateKey(pem),
    certificate,
  };
}

export interface BankMitmOptions {
  /** The real Bob. */
  bank: HostPort;
  log: StepLog;
  /** Trudy's keys (default: made at start). */
  keys?: TrudyBankKeys;
  /** What each deposit becomes on its way to Bob (default "900.00"). */
  amount?: string;
  /** Port for Alice to connect to (0 picks one). */
  port?: number;
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  graceMs?: number;
  signal?: AbortSignal;
}

/** What Trudy did on one connection; the verdict is drawn from it. */
interface MitmState {
  mode?: "seed" | "secure";
  bobKey?: Uint8Array;
  records?: SeedRecords;
  /** Operations read, in order, as `Alice → Bob deposit 10.00`. */
  seen: string[];
  /** requestId → [Alice's amount, Trudy's amount] in cents. */
  changed: Map<string, [number, number]>;
  /** Cents Bob holds beyond what Alice was shown. */
  hidden: number;
  /** Replies rewritten so Alice saw her own amounts. */
  rewritten: number;
  refusal?: string;
  /** Who sent the refusal. */
  refusedBy?: "Alice" | "Bob";
  certificateSwapped: boolean;
}

async function fingerprint(bytes: Uint8Array): Promise<string> {
  return toHex((await sha256(bytes)).subarray(0, 8));
}

/**
 * Starts Trudy's relay in front of Bob. Each Alice connection ends in a verdict: success when
 * Trudy read Alice's secret (and what she did with it), failure with Alice's reason otherwise.
 */
export async function startBankMitm(options: BankMitmOptions): Promise<AttackServer> {
  const keys = options.keys ?? await makeTrudyBankKeys();
  const forgedCents = parseAmount(options.amount ?? "900.00");
  const forgedText = formatCents(forgedCents);
  return startRelayAttack({
    upstream: options.bank,
    log: options.log,
    maxFrame: BANK_MAX_FRAME,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.graceMs !== undefined ? { graceMs: options.graceMs } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    attack: (_session, log) => mitmConnection(log, keys, forgedCents, forgedText),
  });
}

function mitmConnection(
  log: StepLog,
  keys: TrudyBankKeys,
  forgedCents: number,
  forgedText: string,
): ConnectionAttack {
  const st: MitmState = {
    seen: [],
    changed: new Map(),
    hidden: 0,
    rewritten: 0,
    certificateSwapped: false,
  };
  const seal = (records: SeedRecords, plain: Uint8Array) =>
    bankProtocol.encode("seedRecord", { data: records.encrypt(plain) });

  const onFrame = async (direction: "toServer" | "toClient", frame: Uint8Array) => {
    let msg;
    try {
      msg = bankProtocol.decode(frame);
    } catch {
      return frame;
    }
    switch (msg.type) {
      case "seedHello":
        st.mode = "seed";
        log.step(1, `Hello from Alice, claiming '${msg.customer}' (seed protocol): passed on`);
        return frame;
      case "hello":
        st.mode = "secure";
        log.step(1, `Hello from Alice (${msg.version}): passed on`);
        return frame;
      case "seedHiBob": {
        st.bobKey = msg.publicKey;
        log.step(
          2,
          `Hi, I'm Bob: kept Bob's raw key (SHA-256 ${await fingerprint(
            msg.publicKey,
          )}…) and sent Alice Trudy's (SHA-256 ${await fingerprint(keys.publicKey)}…)`,
        );
        return bankProtocol.encode("seedHiBob", {
          greeting: msg.greeting,
          publicKey: keys.publicKey,
        });
      }
      case "hiBob":
        st.certificateSwapped = true;
        log.step(
          2,
          "Hi, I'm Bob: replaced Bob's certificate with Trudy's (CN=bank, SAN 127.0.0.1, her key, issued by 'Trudy Root CA')",
        );
        return bankProtocol.encode("hiBob", {
          greeting: msg.greeting,
          certificate: new Uint8Array(keys.certificate.rawData),
          crl: msg.crl,
        });
      case "seedProveIt":
        log.step(3, "prove it: passed on (no nonce)");
        return frame;
      case "proveIt":
        log.step(3, "prove it: passed on (with Alice's nonce)");
        return frame;
      case "seedProof":
        log.step(
          4,
          `Bob's proof: replaced Bob's signature with Trudy's over '${msg.sentence}' (it verifies with the key Alice now holds)`,
        );
        return bankProtocol.encode("seedProof", {
          sentence: msg.sentence,
          signature: keys.seedProof,
        });
      case "seedSecret": {
        if (!st.bobKey) return frame;
        let block: Uint8Array;
        try {
          block = insecureTextbookRsaDecrypt(keys.decryptKey, msg.secret);
        } catch (err) {
          log.warn(`Alice's secret does not decrypt with Trudy's key: ${errorMessage(err)}`);
          return frame;
        }
        st.records = new SeedRecords(block.slice(block.length - 32));
        const secret = insecureTextbookRsaEncrypt(textbookRsaPublicKey(st.bobKey), block);
        log.step(
          5,
          "Alice's secret: decrypted with Trudy's private key (textbook RSA to her key), encrypted again to Bob's real key and passed on",
        );
        log.step(6, "Trudy now reads and rewrites every record (AES-256-ECB, no integrity)");
        return bankProtocol.encode("seedSecret", { text: msg.text, secret });
      }
      case "seedRecord":
        return st.records ? rewriteRecord(direction, msg.data, st.records) : frame;
      case "error":
        st.refusal = msg.reason;
        st.refusedBy = direction === "toServer" ? "Alice" : "Bob";
        log.info(
          `${direction === "toServer" ? "Alice" : "Bob"} refused, in the clear: ${msg.reason}`,
        );
        return frame;
      default:
        return frame;
    }
  };

  const rewriteRecord = (
    direction: "toServer" | "toClient",
    data: Uint8Array,
    records: SeedRecords,
  ): Uint8Array => {
    let op;
    try {
      op = bankOps.decode(records.decrypt(data));
    } catch (err) {
      log.warn(`cannot read a record: ${errorMessage(err)}`);
      return bankProtocol.encode("seedRecord", { data });
    }
    const who = direction === "toServer" ? "Alice → Bob" : "Bob → Alice";
    if (direction === "toServer" && op.type === "deposit") {
      const asked = parseAmountOrNull(op.amount);
      st.seen.push(`${who} deposit ${op.amount}`);
      if (asked === null) return bankProtocol.encode("seedRecord", { data });
      st.changed.set(op.requestId, [asked, forgedCents]);
      log.step(
        6,
        `read ${who}: deposit ${op.amount} (request ${op.requestId}); changed it to ${forgedText}`,
      );
      return seal(
        records,
        bankOps.encode("deposit", { requestId: op.requestId, amount: forgedText }),
      );
    }
    if (direction === "toServer") {
      const detail = op.type === "withdraw" ? ` ${op.amount}` : "";
      st.seen.push(`${who} ${op.type}${detail}`);
      log.step(6, `read ${who}: ${bankOps.label(op.type)}${detail}: passed on`);
      return bankProtocol.encode("seedRecord", { data });
    }
    // Bob → Alice: show Alice her own amounts and the balance she expects.
    if (op.type === "applied") {
      const change = st.changed.get(op.requestId);
      if (change) {
        st.hidden += change[1] - change[0];
        st.rewritten++;
        log.step(
          6,
          `read ${who}: applied ${formatCents(op.amount)}, balance ${
            formatCents(op.balance)
          }; rewritten to show ${formatCents(change[0])}, balance ${
            formatCents(op.balance - st.hidden)
          }`,
        );
        return seal(
          records,
          bankOps.encode("applied", {
            ...op,
            amount: change[0],
            balance: op.balance - st.hidden,
          }),
        );
      }
      const shown = op.balance - st.hidden;
      log.step(
        6,
        `read ${who}: applied ${formatCents(op.amount)}; balance shown as ${formatCents(shown)}`,
      );
      return seal(records, bankOps.encode("applied", { ...op, balance: shown }));
    }
    if (op.type === "balanceIs" && st.hidden !== 0) {
      const shown = op.balance - st.hidden;
      log.step(
        6,
        `read ${who}: balance ${formatCents(op.balance)}; rewritten to ${formatCents(shown)}`,
      );
      return seal(records, bankOps.encode("balanceIs", { balance: shown }));
    }
    log.step(6, `read ${who}: ${bankOps.label(op.type)}: passed on`);
    return bankProtocol.encode("seedRecord", { data });
  };

  return {
    onFrame: (direction, frame) => onFrame(direction, frame),
    finish: (): Verdict => verdictOf(st, forgedText),
  };
}

function parseAmountOrNull(text: string): number | null {
  try {
    return parseAmount(text);
  } catch {
    return null;
  }
}

function verdictOf(st: MitmState, forgedText: string): Verdict {
  if (st.records) {
    const changed = [...st.changed.values()];
    const what = changed.length > 0
      ? `; changed ${
        changed.map(([a]) => `a deposit of ${formatCents(a)}`).join(" and ")
      } into ${forgedText} on its way to Bob${
        st.rewritten > 0
          ? `, and rewrote Bob's ${
            st.rewritten === 1 ? "reply" : "replies"
          } so Alice saw her own amount`
          : ""
      }`
      : " (no deposit to change)";
    return {
      succeeded: true,
      reason: "seed-key-accepted",
      detail:
        `Trudy put her key in 'Hi, I'm Bob' (seed: unauthenticated), forged Bob's proof with it, read Alice's secret and ${st.seen.length} operation${
          st.seen.length === 1 ? "" : "s"
        } (${st.seen.join(", ") || "none"})${what}`,
    };
  }
  if (st.refusal !== undefined) {
    const step = /^STEP (\d)/.exec(st.refusal)?.[1];
    const at = step ? ` at STEP ${step}` : "";
    const who = st.refusedBy ?? "Alice";
    // Before Trudy swapped anything, a refusal is about the two ends (a protocol mismatch, a
    // revoked customer…), not about her.
    if (!st.certificateSwapped && st.bobKey === undefined) {
      return {
        succeeded: false,
        reason: "refused-before-swap",
        detail:
          `${who} refused${at} before Trudy changed anything (she never got to swap her key), and said why: ${st.refusal}`,
      };
    }
    return {
      succeeded: false,
      reason: "key-refused",
      detail: who === "Alice"
        ? `Alice refused Trudy's ${
          st.certificateSwapped ? "certificate" : "key"
        }${at} and told Trudy why: ${st.refusal}`
        : `Bob refused${at} after Trudy's swap and said why: ${st.refusal}`,
    };
  }
  return {
    succeeded: false,
    reason: st.certificateSwapped ? "hung-up-after-certificate" : "no-secret",
    detail: st.certificateSwapped
      ? "Alice hung up after Trudy's certificate without saying why: no secret, no operation read"
      : "the session ended before Alice sent a secret: Trudy read nothing",
  };
}
