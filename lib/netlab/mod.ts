/** lib/netlab: the public face of this folder (re-exports only). */

export * from "./lab.ts";
export * from "./topology.ts";
export * from "./session.ts";
