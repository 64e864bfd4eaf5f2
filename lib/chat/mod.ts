/** lib/chat: the public face of this folder (re-exports only). */

export * from "./client.ts";
export * from "./limits.ts";
export * from "./line_editor.ts";
export * from "./protocol.ts";
export * from "./server.ts";
export * from "./session.ts";
