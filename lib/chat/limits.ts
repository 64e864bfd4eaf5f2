/** The chat server's limits: how many clients, how much each may queue and send, its deadlines. */

import { CLIENT_MAX_FRAME } from "./protocol.ts";

export interface ChatLimits {
  /** Clients joined at once; more are told the server is full. */
  maxClients: number;
  /** Connections one address may hold at once, so one host cannot fill the room. */
  maxPerAddress: number;
  /** TLS handshake and the `hello` must finish within this. */
  helloTimeoutMs: number;
  /** A joined client that sends nothing (not even a ping) for this long is disconnected. */
  idleTimeoutMs: number;
  /** A write to a client that makes no progress for this long disconnects it. */
  writeTimeoutMs: number;
  /** Bytes waiting for one client (beyond what its socket holds); over this it is disconnected. */
  maxQueueBytes: number;
  /** Largest frame accepted from a client, checked before buffering. */
  maxFrame: number;
  /** Longest chat text, in characters. */
  maxText: number;
  /** Messages per second per client (sustained). */
  rate: number;
  /** Messages a client may send in a burst above the rate. */
  burst: number;
}

export const DEFAULT_CHAT_LIMITS: Readonly<ChatLimits> = {
  maxClients: 1000,
  maxPerAddress: 16,
  helloTimeoutMs: 10_000,
  idleTimeoutMs: 90_000,
  writeTimeoutMs: 10_000,
  maxQueueBytes: 256 * 1024,
  maxFrame: CLIENT_MAX_FRAME,
  maxText: 1000,
  rate: 5,
  burst: 20,
};
