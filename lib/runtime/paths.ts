/**
 * Where the project's own files are, found from this module's location once, so that a module may
 * move between folders without its paths breaking at run time (which `deno check` cannot see).
 */

import { fileURLToPath } from "node:url";

/** The project's top folder (the one with `deno.json`), without a trailing slash. */
export const PROJECT_ROOT: string = fileURLToPath(new URL("../../", import.meta.url)).replace(
  /\/$/,
  "",
);

/** Run-time data: keys, ledgers, reports, accounts, scratch files of tests and scenarios. */
export const DATA_DIR = `${PROJECT_ROOT}/data`;
/** Expected handshake sequences, the Wireshark dissector, captures. */
export const PCAP_DIR = `${PROJECT_ROOT}/pcap`;
/** The expected TLS record sequences (JSON), one file per scenario. */
export const EXPECTED_DIR = `${PCAP_DIR}/expected`;
/** The generated Wireshark dissector. */
export const DISSECTOR_PATH = `${PCAP_DIR}/lab.lua`;
/** Captures written at run time (git-ignored). */
export const CAPTURES_DIR = `${PCAP_DIR}/captures`;

/** A path inside the project, from a path relative to its top folder. */
export function projectPath(relative: string): string {
  return `${PROJECT_ROOT}/${relative.replace(/^\/+/, "")}`;
}
