/** lib/wire: the public face of this folder (re-exports only). */

export * from "./codec.ts";
export * from "./frame.ts";
