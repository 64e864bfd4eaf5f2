/** lib/ca: the public face of this folder (re-exports only). */

export * from "./authority.ts";
export * from "./client.ts";
export * from "./protocol.ts";
export * from "./server.ts";
