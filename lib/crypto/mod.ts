/** lib/crypto: the public face of this folder (re-exports only). */

export * from "./key_exchange.ts";
export * from "./openssl_rsa.ts";
export * from "./primitives.ts";
export * from "./textbook_rsa.ts";
export * from "./transcript.ts";
