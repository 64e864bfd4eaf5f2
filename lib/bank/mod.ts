/** lib/bank: the public face of this folder (re-exports only). */

export * from "./accounts.ts";
export * from "./amount.ts";
export * from "./client.ts";
export * from "./handshake.ts";
export * from "./key_schedule.ts";
export * from "./machine.ts";
export * from "./protocol.ts";
export * from "./records.ts";
export * from "./secure.ts";
export * from "./seed.ts";
export * from "./server.ts";
