/** lib/wireshark: the public face of this folder (re-exports only). */

export * from "./browser.ts";
export * from "./capture.ts";
export * from "./diagram.ts";
export * from "./dissector.ts";
export * from "./expectation.ts";
export * from "./ladder.ts";
export * from "./ladder_svg.ts";
export * from "./plugin.ts";
export * from "./tls_check.ts";
export * from "./tls_packets.ts";
export * from "./tls_records.ts";
export * from "./tls_timing.ts";
