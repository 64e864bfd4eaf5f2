/**
 * The CA's network side: serves enrolments (steps 1–2) and the CRL to many clients at once.
 * A malformed or hostile peer gets a one-line refusal and is disconnected; others are unaffected.
 */

import { type CertificateAuthority, EnrolmentError, serialOf } from "./authority.ts";
import { CA_MAX_FRAME, CA_PORT, CA_READ_TIMEOUT_MS, caProtocol } from "./protocol.ts";
import { Channel, DeadlineError, FrameError, LocalRefusal } from "../wire/mod.ts";
import { errorMessage, type StepLog } from "../runtime/mod.ts";
import { der } from "../pki/mod.ts";
import { serveFramed, type Server } from "../net/mod.ts";

export interface CaServerOptions {
  ca: CertificateAuthority;
  log: StepLog;
  hostname?: string;
  port?: number;
  /** The seeds' behaviour: enrol any ID without a code. */
  openEnrolment?: boolean;
  signal?: AbortSignal;
  readTimeoutMs?: number;
  maxConnections?: number;
  /** Connections one address may hold at once (default 16). */
  maxPerAddress?: number;
}

export function serveCa(options: CaServerOptions): Server {
  const { ca } = options;
  return serveFramed({
    hostname: options.hostname,
    port: options.port ?? CA_PORT,
    log: options.log,
    signal: options.signal,
    maxConnections: options.maxConnections,
    maxPerAddress: options.maxPerAddress,
    stream: { maxFrame: CA_MAX_FRAME, readTimeoutMs: options.readTimeoutMs ?? CA_READ_TIMEOUT_MS },
    handler: async (stream, { remote, log }) => {
      const channel = new Channel(caProtocol, stream);
      const refuse = async (refusal: LocalRefusal) => {
        log.warn(`refused ${remote}: ${refusal.message}`);
        await channel.refuse(refusal).catch(() => {});
      };
      let msg;
      try {
        msg = await channel.receive(["csr", "crlRequest"]);
      } catch (err) {
        if (err instanceof DeadlineError) return log.warn(`dropped ${remote}: ${err.message}`);
        if (err instanceof FrameError) {
          return await refuse(new LocalRefusal("malformed-request", err.message));
        }
        throw err;
      }
      if (msg.type === "crlRequest") {
        const crl = await ca.crl();
        await channel.send("crl", { crl: der(crl) });
        log.info(`sent CRL to ${remote} (${crl.entries.length} revoked)`);
        return;
      }
      log.step(1, `received CSR for SID ${msg.sid} from ${remote} (${msg.csr.length} bytes)`);
      try {
        let again = false;
        const cert = await ca.enrol({
          sid: msg.sid,
          binding: msg.binding,
          csr: msg.csr,
          openEnrolment: options.openEnrolment ?? false,
          onAgain: () => again = true,
        });
        log.step(
          2,
          again
            ? `cert 2 for SID ${msg.sid} was issued for this key already (serial ${
              serialOf(cert)
            }): sent again, nothing signed (a retry, or a copy of the request)`
            : `signed cert 2 for SID ${msg.sid}, serial ${
              serialOf(cert)
            }, valid until ${cert.notAfter.toISOString()}`,
        );
        await channel.send("certificate", { certificate: der(cert) });
      } catch (err) {
        if (err instanceof EnrolmentError) {
          return await refuse(
            new LocalRefusal("enrolment-refused", `Enrolment refused: ${err.message}`),
          );
        }
        log.error(`enrolment of ${msg.sid} failed: ${errorMessage(err)}`);
        await channel.refuse(new LocalRefusal("internal-error", "Enrolment failed: internal error"))
          .catch(() => {});
      }
    },
  });
}
