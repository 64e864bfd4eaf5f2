/**
 * One revocation checker for every server that accepts client certificates (Blackboard, Bob).
 *
 * It holds the last CRL it accepted and hands it out while it is fresh. The rules:
 *
 *   - A CRL older than `refreshMs` is fetched again before use (one fetch at a time, shared).
 *   - Every CRL fetched is verified against the pinned root: issuer, signature, thisUpdate and
 *     nextUpdate. A CRL whose CRL number is lower than the one held is refused (a rollback to a
 *     CRL from before a revocation).
 *   - When a fetch fails (the source is unreachable, or sends a CRL that is refused), the CRL held
 *     is used only until its nextUpdate. After that the checker fails closed: `current()` throws
 *     `RevocationUnavailableError` and the server must refuse the client.
 *
 * Where the CRL comes from is injected (`fetch`): the CA over the network (lib/ca's `fetchCrl`,
 * which this layer may not import) or a file that an operator replaces.
 */

import { errorMessage, type StepLog } from "../runtime/mod.ts";
import { type Certificate, CertificateError, type Crl, crlNumber, verifyCrl } from "./pki.ts";

/** Revocation cannot be checked: no CRL can be had and none held is still valid. */
export class RevocationUnavailableError extends Error {
  override name = "RevocationUnavailableError";
}

/** Fetches the current CRL within `timeoutMs`; the checker verifies what it returns. */
export type CrlFetch = (timeoutMs: number) => Promise<Crl>;

/** What a server needs from a revocation checker: a verified CRL that is current now. */
export interface Revocation {
  current(): Promise<Crl>;
}

export interface RevocationOptions {
  /** Where CRLs come from (the CA, a file). */
  fetch: CrlFetch;
  /** What `fetch` reaches, for logs: "the CA at 127.0.0.1:9335", "the file crl.pem". */
  source: string;
  /** The pinned root every CRL must be signed by. */
  root: Certificate;
  log: StepLog;
  /** A CRL older than this is fetched again before use (default 5 s). */
  refreshMs?: number;
  /** Deadline for one fetch (default 3 s). */
  timeoutMs?: number;
  /** The clock, in milliseconds (default `Date.now`). */
  now?: () => number;
}

export const DEFAULT_CRL_REFRESH_MS = 5000;
export const DEFAULT_CRL_FETCH_TIMEOUT_MS = 3000;

/** The shared checker: see the module's rules. */
export class RevocationChecker implements Revocation {
  readonly #options: RevocationOptions;
  readonly refreshMs: number;
  readonly #now: () => number;
  #last: { crl: Crl; fetchedAt: number } | undefined;
  #inflight: Promise<Crl> | undefined;

  constructor(options: RevocationOptions) {
    this.#options = options;
    this.refreshMs = options.refreshMs ?? DEFAULT_CRL_REFRESH_MS;
    this.#now = options.now ?? Date.now;
  }

  /** A CRL that is verified against the root and current now; throws when there is none. */
  async current(): Promise<Crl> {
    const now = this.#now();
    const last = this.#last;
    if (last && now - last.fetchedAt < this.refreshMs && stillValid(last.crl, now)) {
      return last.crl;
    }
    this.#inflight ??= this.#refresh().finally(() => (this.#inflight = undefined));
    return await this.#inflight;
  }

  async #refresh(): Promise<Crl> {
    const { source, root, log } = this.#options;
    try {
      const crl = await this.#options.fetch(
        this.#options.timeoutMs ?? DEFAULT_CRL_FETCH_TIMEOUT_MS,
      );
      await verifyCrl(crl, root, new Date(this.#now()));
      const previous = this.#last?.crl;
      const held = previous ? crlNumber(previous) : undefined;
      const number = crlNumber(crl);
      // check: crl-no-rollback tests/pki/revocation_test.ts
      if (held !== undefined && (number === undefined || number < held)) {
        throw new CertificateError(
          `CRL #${
            number ?? "?"
          } from ${source} is older than CRL #${held}, already held: refused (a rollback)`,
        );
      }
      if (!previous || crlNumber(previous) !== number) {
        log.info(
          `CRL from ${source}: ${crl.entries.length} revoked (CRL #${
            number ?? "?"
          }, valid until ${crl.nextUpdate?.toISOString()})`,
        );
      }
      this.#last = { crl, fetchedAt: this.#now() };
      return crl;
    } catch (err) {
      const last = this.#last;
      if (last && stillValid(last.crl, this.#now())) {
        log.warn(
          `cannot refresh the CRL (${errorMessage(err)}): using CRL #${
            crlNumber(last.crl) ?? "?"
          }, valid until ${last.crl.nextUpdate?.toISOString()}`,
        );
        return last.crl;
      }
      throw new RevocationUnavailableError(
        `Cannot check revocation: ${errorMessage(err)}, and no valid CRL is held`,
      );
    }
  }
}

function stillValid(crl: Crl, now: number): boolean {
  return crl.nextUpdate !== undefined && crl.nextUpdate.getTime() > now;
}
