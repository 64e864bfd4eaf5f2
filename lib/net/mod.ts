/** lib/net: the public face of this folder (re-exports only). */

export * from "./nodelay.ts";
export * from "./rate_limit.ts";
export * from "./redirect.ts";
export * from "./relay.ts";
export * from "./server.ts";
export * from "./tls.ts";
