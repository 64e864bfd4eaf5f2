/** lib/blackboard: the public face of this folder (re-exports only). */

export * from "./client.ts";
export * from "./progress.ts";
export * from "./report_names.ts";
export * from "./protocol.ts";
export * from "./secure.ts";
export * from "./seed.ts";
export * from "./server.ts";
export * from "./serving.ts";
export * from "./upload_store.ts";
