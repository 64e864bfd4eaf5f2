/** lib/trudy: the public face of this folder (re-exports only). */

export * from "./attack.ts";
export * from "./bank_mitm.ts";
export * from "./bank_replay.ts";
export * from "./blackboard_path.ts";
export * from "./cross_service.ts";
export * from "./crl_rollback.ts";
export * from "./enrol_code_theft.ts";
export * from "./enrol_impersonation.ts";
export * from "./error_injection.ts";
export * from "./message_replay.ts";
export * from "./session_key_sniff.ts";
