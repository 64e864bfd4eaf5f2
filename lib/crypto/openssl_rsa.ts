/**
 * RSASSA-PKCS1-v1_5 with SHA-256 through the system's OpenSSL (libcrypto.so.3), with Deno's FFI.
 *
 * Why: Deno's WebCrypto (and its `node:crypto`) computes RSA in Rust code that signs about twice
 * as slowly as OpenSSL on this machine: RSA-3072 4.0 against 1.8 ms, RSA-2048 1.55 against 0.3 ms
 * (README, "Performance against peers"). The CA signs every certificate with its RSA-3072 root,
 * and every Blackboard and bank session signs twice and verifies twice with RSA-2048.
 *
 * What: the same signatures, byte for byte (PKCS#1 v1.5 is deterministic; tests compare them with
 * WebCrypto's), computed by OpenSSL: `EVP_DigestSign` on a thread of Deno's blocking pool
 * (`nonblocking`), so that signatures run beside the event loop, on both cores; `EVP_DigestVerify`
 * in the calling thread (tens of microseconds). No cryptography is written here: OpenSSL does the
 * math, as WebCrypto does otherwise.
 *
 * How it is enabled: an actor calls `startOpenSslRsa()` (lib/runtime/launch.ts) first thing:
 * `loadOpenSslRsa()` with the `--allow-ffi` its task grants, then `dropFfi()`, which revokes that
 * permission for the rest of the process: the bound functions stay callable, no library can be
 * opened after.
 * Without the permission, without libcrypto.so.3, or off Linux, nothing is loaded, the outcome
 * says why, and every signature goes through WebCrypto as before (lib/pki's `signRsa`).
 */

/** Whether OpenSSL signs and verifies in this process, and if not, why. */
export type OpenSslOutcome = { loaded: true; version: string } | { loaded: false; reason: string };

const LIBRARY = "libcrypto.so.3";

const SYMBOLS = {
  OpenSSL_version: { parameters: ["i32"], result: "pointer" },
  BIO_new_mem_buf: { parameters: ["buffer", "i32"], result: "pointer" },
  BIO_free: { parameters: ["pointer"], result: "i32" },
  d2i_PrivateKey_bio: { parameters: ["pointer", "pointer"], result: "pointer" },
  d2i_PUBKEY_bio: { parameters: ["pointer", "pointer"], result: "pointer" },
  EVP_PKEY_free: { parameters: ["pointer"], result: "void" },
  EVP_PKEY_get_base_id: { parameters: ["pointer"], result: "i32" },
  EVP_MD_CTX_new: { parameters: [], result: "pointer" },
  EVP_MD_CTX_free: { parameters: ["pointer"], result: "void" },
  EVP_sha256: { parameters: [], result: "pointer" },
  EVP_DigestSignInit: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_DigestSign: {
    parameters: ["pointer", "buffer", "buffer", "buffer", "usize"],
    result: "i32",
    nonblocking: true,
  },
  EVP_DigestVerifyInit: {
    parameters: ["pointer", "pointer", "pointer", "pointer", "pointer"],
    result: "i32",
  },
  EVP_DigestVerify: {
    parameters: ["pointer", "buffer", "usize", "buffer", "usize"],
    result: "i32",
  },
  ERR_clear_error: { parameters: [], result: "void" },
} as const;

type LibCrypto = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

/** OpenSSL's EVP_PKEY_RSA (NID_rsaEncryption). */
const EVP_PKEY_RSA = 6;
/** OPENSSL_VERSION, for `OpenSSL_version`. */
const OPENSSL_VERSION = 0;

let state:
  | {
    /** Kept (never closed) for as long as the process runs: the bound functions need it. */
    dl: Deno.DynamicLibrary<typeof SYMBOLS>;
    lib: LibCrypto;
    sha256: Deno.PointerValue;
  }
  | undefined;
let lastOutcome: OpenSslOutcome = { loaded: false, reason: "not loaded (loadOpenSslRsa)" };

/**
 * Loads libcrypto.so.3 and binds what RSA signing and verification need. Idempotent; never
 * throws. Needs `--allow-ffi` (revoke it afterwards: the bound functions stay usable).
 */
export function loadOpenSslRsa(): OpenSslOutcome {
  if (state) return lastOutcome;
  if (Deno.build.os !== "linux") {
    return lastOutcome = { loaded: false, reason: `not supported on ${Deno.build.os}` };
  }
  if (Deno.permissions.querySync({ name: "ffi" }).state !== "granted") {
    return lastOutcome = { loaded: false, reason: "no --allow-ffi" };
  }
  let dl: Deno.DynamicLibrary<typeof SYMBOLS>;
  try {
    dl = Deno.dlopen(LIBRARY, SYMBOLS);
  } catch (err) {
    const why = err instanceof Error ? err.message : String(err);
    return lastOutcome = { loaded: false, reason: `${LIBRARY}: ${why}` };
  }
  const lib = dl.symbols;
  const sha256 = lib.EVP_sha256();
  const versionPtr = lib.OpenSSL_version(OPENSSL_VERSION);
  const version = versionPtr === null
    ? "OpenSSL"
    : new Deno.UnsafePointerView(versionPtr).getCString().slice(0, 80);
  if (sha256 === null) {
    dl.close();
    return lastOutcome = { loaded: false, reason: `${LIBRARY}: no SHA-256` };
  }
  state = { dl, lib, sha256 };
  return lastOutcome = { loaded: true, version };
}

/**
 * How many signatures OpenSSL made, and how many it checked (valid or not), in this process: for
 * tests and measurements.
 */
export const openSslRsaCounts = { signed: 0, checked: 0 };

/** What `loadOpenSslRsa` found, or that it was not called: for logs and tests. */
export function openSslRsaOutcome(): OpenSslOutcome {
  return lastOutcome;
}

/**
 * A copy of `bytes` to hand to OpenSSL: never empty (Deno passes an empty buffer as a null
 * pointer), and not a view of the caller's memory, which a call on another thread must not share.
 */
function ffiCopy(bytes: Uint8Array): Uint8Array<ArrayBuffer> {
  const copy = new Uint8Array(Math.max(bytes.length, 1));
  copy.set(bytes);
  return copy;
}

/** Frees the EVP_PKEY behind a key object that is no longer reachable. */
const freed = new FinalizationRegistry<Deno.PointerObject>((pkey) => {
  state?.lib.EVP_PKEY_free(pkey);
});

/**
 * Parses DER with a `d2i_*_bio` function (a memory BIO over a copy: no pointer arithmetic here,
 * and nothing that needs `--allow-ffi` once it is revoked); the EVP_PKEY if it is an RSA key.
 */
function parseKey(
  lib: LibCrypto,
  parse: "d2i_PrivateKey_bio" | "d2i_PUBKEY_bio",
  der: Uint8Array,
): Deno.PointerObject | undefined {
  if (der.length === 0 || der.length > 65_536) return undefined;
  const copy = ffiCopy(der);
  const bio = lib.BIO_new_mem_buf(copy, copy.length);
  if (bio === null) return undefined;
  const pkey = lib[parse](bio, null);
  lib.BIO_free(bio);
  copy.fill(0); // OpenSSL has its own copy now; a private key's bytes are not left lying around
  if (pkey === null) {
    lib.ERR_clear_error();
    return undefined;
  }
  if (lib.EVP_PKEY_get_base_id(pkey) !== EVP_PKEY_RSA) {
    lib.EVP_PKEY_free(pkey);
    return undefined;
  }
  return pkey;
}

/** An RSA private key held by OpenSSL: signs RSASSA-PKCS1-v1_5 with SHA-256. */
export class OpenSslSigningKey {
  readonly #pkey: Deno.PointerObject;
  readonly #modulusBytes: number;

  private constructor(pkey: Deno.PointerObject, modulusBytes: number) {
    this.#pkey = pkey;
    this.#modulusBytes = modulusBytes;
    freed.register(this, pkey);
  }

  /**
   * The key in PKCS#8 DER, or undefined when OpenSSL is not loaded or the bytes are no RSA key.
   * `modulusBits` sizes the signature buffer.
   */
  static fromPkcs8(pkcs8: Uint8Array, modulusBits: number): OpenSslSigningKey | undefined {
    if (!state) return undefined;
    const pkey = parseKey(state.lib, "d2i_PrivateKey_bio", pkcs8);
    return pkey && new OpenSslSigningKey(pkey, Math.ceil(modulusBits / 8));
  }

  /** The signature over `data`; throws if OpenSSL refuses (the caller may fall back). */
  async sign(data: Uint8Array): Promise<Uint8Array> {
    const { lib, sha256 } = state!;
    const ctx = lib.EVP_MD_CTX_new();
    if (ctx === null) throw new Error("OpenSSL: EVP_MD_CTX_new failed");
    // The call runs on another thread: it gets its own copy of the input, and every buffer it
    // writes or reads is referenced again after it returns (`finally`), so none can be collected
    // while OpenSSL uses it, whatever the runtime does to keep them.
    const input = ffiCopy(data);
    const signature = new Uint8Array(this.#modulusBytes);
    const length = new BigUint64Array([BigInt(signature.length)]);
    const lengthBytes = new Uint8Array(length.buffer);
    try {
      if (lib.EVP_DigestSignInit(ctx, null, sha256, null, this.#pkey) !== 1) {
        throw new Error("OpenSSL: EVP_DigestSignInit failed");
      }
      const ok = await lib.EVP_DigestSign(ctx, signature, lengthBytes, input, BigInt(data.length));
      if (ok !== 1) throw new Error("OpenSSL: EVP_DigestSign failed");
      const n = Number(length[0]);
      if (n !== signature.length) throw new Error(`OpenSSL: a ${n}-byte signature`);
      openSslRsaCounts.signed++;
      return signature;
    } catch (err) {
      // OpenSSL's error queue is per thread: a failure on the pool's thread leaves its entry
      // there (the queue is bounded, and a successful call adds none); this clears this one's.
      lib.ERR_clear_error();
      throw err;
    } finally {
      lib.EVP_MD_CTX_free(ctx);
      void (input.byteLength + lengthBytes.byteLength);
    }
  }
}

/** An RSA public key held by OpenSSL: verifies RSASSA-PKCS1-v1_5 with SHA-256. */
export class OpenSslVerifyingKey {
  readonly #pkey: Deno.PointerObject;

  private constructor(pkey: Deno.PointerObject) {
    this.#pkey = pkey;
    freed.register(this, pkey);
  }

  /** The key in SubjectPublicKeyInfo DER, or undefined when OpenSSL is not loaded or not RSA. */
  static fromSpki(spki: Uint8Array): OpenSslVerifyingKey | undefined {
    if (!state) return undefined;
    const pkey = parseKey(state.lib, "d2i_PUBKEY_bio", spki);
    return pkey && new OpenSslVerifyingKey(pkey);
  }

  /** True only when OpenSSL says the signature is valid (1); an error counts as invalid. */
  verify(signature: Uint8Array, data: Uint8Array): boolean {
    const { lib, sha256 } = state!;
    const ctx = lib.EVP_MD_CTX_new();
    if (ctx === null) return false;
    const sig = ffiCopy(signature);
    const input = ffiCopy(data);
    try {
      if (lib.EVP_DigestVerifyInit(ctx, null, sha256, null, this.#pkey) !== 1) return false;
      openSslRsaCounts.checked++;
      const result = lib.EVP_DigestVerify(
        ctx,
        sig,
        BigInt(signature.length),
        input,
        BigInt(data.length),
      );
      // check: openssl-verify-result tests/crypto/openssl_rsa_test.ts
      if (result !== 1) return false; // 0: a bad signature; below 0: an error
      return true;
    } finally {
      lib.ERR_clear_error();
      lib.EVP_MD_CTX_free(ctx);
    }
  }
}

/** One line for a server's log: which code computes its RSA signatures. */
export function describeRsa(outcome: OpenSslOutcome = openSslRsaOutcome()): string {
  return outcome.loaded
    ? `RSA signatures by ${outcome.version} (${LIBRARY})`
    : `RSA signatures by WebCrypto (OpenSSL not loaded: ${outcome.reason})`;
}
