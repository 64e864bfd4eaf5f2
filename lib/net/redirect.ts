/**
 * A connection to `server:port` that Trudy takes over in place (an nft redirect in the netlab),
 * handed to her relay's port `to`: what lib/netlab installs and what lib/wireshark's ladder draws.
 */
export interface Redirect {
  /** The real server's address and port the victims dial. */
  server: string;
  port: number;
  /** Trudy's relay port in her namespace. */
  to: number;
}
