/**
 * One revocation checker for every server that accepts client certificates (Blackboard, Bob).
 *
 * It holds the last CRL it accepted and hands it out while it is fresh. The rules:
 *
 *   - A CRL older than `refreshMs` is fetched again before use (one fetch at a time, shared).
 *   - Every CRL fetched is verified against the pinned root: issuer, signature, thisUpdate and
 *     nextUpdate. A CRL older than the one held is refused (a rollback to a CRL from before a
 *     revocation): its CRL number is lower, or its thisUpdate is earlier.
 *   - When a fetch fails (the source is unreachable, or sends a CRL that is refused), the CRL held
 *     is used only until its nextUpdate. After that the checker fails closed: `current()` throws
 *     `RevocationUnavailableError` and the server must refuse the client.
 *
 * Where the CRL comes from is injected (`fetch`): the CA over the network (lib/ca's `fetchCrl`,
 * which this layer may not import) or a file that an operator replaces.
 *
 * The same rules check a CRL that a server staples in its handshake for its own certificate
 * (`checkStapledCrl`): a client refuses a server whose certificate the CA has revoked.
 */

import { errorMessage, type StepLog, writeFileAtomic } from "../runtime/mod.ts";
import {
  type Certificate,
  CertificateError,
  certificateLabel,
  type Crl,
  crlNumber,
  der,
  parseCrl,
  verifyCrl,
} from "./pki.ts";

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
      const previous = this.#last?.crl;
      await checkCrl(crl, { root, now: new Date(this.#now()), held: previous, source });
      const number = crlNumber(crl);
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

export interface CheckCrlOptions {
  /** The pinned root the CRL must be signed by. */
  root: Certificate;
  now?: Date;
  /** The CRL held so far: the new one must not be older. */
  held?: Crl | undefined;
  /** Where the CRL came from, for the refusal's words. */
  source?: string;
}

/**
 * The checker's rules for one CRL: signed by the pinned root and current now (thisUpdate passed,
 * nextUpdate not), and not older than the CRL held, if any: neither its CRL number nor its
 * thisUpdate goes backwards (a rollback to a CRL from before a revocation). Throws
 * `CertificateError`.
 */
export async function checkCrl(crl: Crl, options: CheckCrlOptions): Promise<void> {
  const { held } = options;
  await verifyCrl(crl, options.root, options.now ?? new Date());
  if (!held) return;
  const from = options.source ? ` from ${options.source}` : "";
  const heldNumber = crlNumber(held);
  const number = crlNumber(crl);
  // check: crl-number-rollback tests/pki/revocation_test.ts
  if (heldNumber !== undefined && (number === undefined || number < heldNumber)) {
    throw new CertificateError(
      `CRL #${
        number ?? "?"
      }${from} is older than CRL #${heldNumber}, already held: refused (a rollback)`,
    );
  }
  // check: crl-this-update-rollback tests/pki/revocation_test.ts
  if (crl.thisUpdate.getTime() < held.thisUpdate.getTime()) {
    throw new CertificateError(
      `CRL #${number ?? "?"}${from} was issued at ${crl.thisUpdate.toISOString()}, before CRL #${
        heldNumber ?? "?"
      } already held (${held.thisUpdate.toISOString()}): refused (a rollback)`,
    );
  }
}

/**
 * The newest CRL a client has seen, kept in a file of its own (a student's home), so that a server
 * cannot staple an older one, from before its own revocation, while that one is still within its
 * nextUpdate: the checker's rollback rule (`checkCrl`'s `held`) across a client's runs.
 */
export class CrlMemory {
  readonly path: string;
  readonly root: Certificate;

  constructor(path: string, root: Certificate) {
    this.path = path;
    this.root = root;
  }

  /**
   * The CRL kept, when there is one signed by the root (its nextUpdate may have passed: it still
   * says how new a CRL must be). A missing, unreadable or foreign file holds nothing.
   */
  async held(): Promise<Crl | undefined> {
    let bytes: Uint8Array;
    try {
      bytes = await Deno.readFile(this.path);
    } catch {
      return undefined;
    }
    try {
      const crl = parseCrl(bytes);
      await verifyCrl(crl, this.root, crl.thisUpdate);
      return crl;
    } catch {
      return undefined;
    }
  }

  /** Keeps `crl` when it is newer than the one kept (by CRL number, then thisUpdate). */
  async keep(crl: Crl, held?: Crl): Promise<void> {
    if (held && !newer(crl, held)) return;
    // Looked at again just before writing: another session of the same student (two commands at
    // once) may have kept a newer one since `held` was read.
    const now = await this.held();
    if (now && !newer(crl, now)) return;
    await writeFileAtomic(this.path, der(crl));
  }
}

function newer(crl: Crl, than: Crl): boolean {
  const a = crlNumber(crl);
  const b = crlNumber(than);
  if (a !== undefined && b !== undefined && a !== b) return a > b;
  return crl.thisUpdate.getTime() > than.thisUpdate.getTime();
}

/**
 * A CRL that a server stapled in its handshake for its own certificate (DER), checked by a client
 * with the checker's rules (`checkCrl`: signed by the pinned root, nextUpdate not passed, and not
 * older than the newest CRL the client's `memory` holds), then the server's certificate against
 * it. Returns the CRL, and keeps it in `memory` when it is newer; throws `CertificateError` when
 * the CRL is refused or lists the certificate.
 */
export async function checkStapledCrl(
  cert: Certificate,
  bytes: Uint8Array,
  options: { root: Certificate; now?: Date; what?: string; memory?: CrlMemory },
): Promise<Crl> {
  const what = options.what ?? "the server's stapled CRL";
  if (bytes.length === 0) {
    throw new CertificateError(
      `Cannot verify certificate ${certificateLabel(cert)}: no stapled CRL`,
    );
  }
  const held = await options.memory?.held();
  let crl: Crl;
  try {
    crl = parseCrl(bytes);
    await checkCrl(crl, {
      root: options.root,
      held,
      source: "the server's staple",
      ...(options.now ? { now: options.now } : {}),
    });
  } catch (err) {
    // A refusal because of the memory names it: if the CA was ever rebuilt (its CRL numbers
    // started again), the file is what a person removes, and nothing else is.
    const memory = held && /a rollback/.test(errorMessage(err))
      ? ` (the newest CRL this client has seen is kept in ${
        options.memory!.path
      }; remove it only ` +
        "if the CA was rebuilt)"
      : "";
    throw new CertificateError(`${what} is refused: ${errorMessage(err)}${memory}`);
  }
  await options.memory?.keep(crl, held);
  // check: stapled-crl-revoked tests/blackboard/handshake_test.ts
  if (crl.findRevoked(cert)) {
    throw new CertificateError(
      `Cannot verify certificate ${certificateLabel(cert)}: it has been revoked (${what}, CRL #${
        crlNumber(crl) ?? "?"
      })`,
    );
  }
  return crl;
}
