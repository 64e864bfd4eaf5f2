/** lib/runtime: the public face of this folder (re-exports only). */

export * from "./cli.ts";
export * from "./fs.ts";
export * from "./garbage.ts";
export * from "./launch.ts";
export * from "./lock.ts";
export * from "./log.ts";
export * from "./paths.ts";
export * from "./process.ts";
export * from "./sqlite.ts";
export * from "./stats.ts";
export * from "./text.ts";
export * from "./wait.ts";
