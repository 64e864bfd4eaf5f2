/**
 * System 3, the TLS chat: three clients over TLS 1.3; a client over TLS 1.2 (the seed's sequence),
 * and an independent client offering only AES128-SHA (the seed's cipher), refused.
 */

import type { RunningProcess } from "../../lib/runtime/mod.ts";
import { hasTool } from "../../lib/runtime/mod.ts";
import {
  at,
  type Context,
  listenArgs,
  scenario,
  ScenarioError,
  START_TIMEOUT_MS,
} from "./harness.ts";
import { issueServer } from "./steps.ts";

/** Which independent TLS client can offer only AES128-SHA, as the seed did. */
async function refusalClient(): Promise<"python3" | "openssl" | undefined> {
  if (await hasTool("python3")) return "python3";
  if (await hasTool("openssl")) return "openssl";
  return undefined;
}

/** The tool that offered only AES128-SHA, as the scenario's note says (`… (python3)`). */
function refusalTools(notes: readonly string[]): string[] {
  return notes.flatMap((n) => /^AES128-SHA .*\((python3|openssl)\)$/.exec(n)?.slice(1, 2) ?? []);
}

const SEED_CLIENT = `import socket, ssl, sys
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.maximum_version = ssl.TLSVersion.TLSv1_2
ctx.set_ciphers('AES128-SHA')
ctx.load_verify_locations(sys.argv[2])
try:
    ctx.wrap_socket(socket.create_connection((sys.argv[3], int(sys.argv[1]))), server_hostname='localhost')
    print('connected with AES128-SHA')
    sys.exit(1)
except ssl.SSLError as e:
    print('refused:', e.reason)`;

/** Connects offering only AES128-SHA; returns what happened, throws if it was accepted. */
async function offerAes128Sha(ctx: Context, port: number, root: string): Promise<string> {
  const tool = await refusalClient();
  if (!tool) return "AES128-SHA refusal not tried: neither python3 nor openssl is installed";
  const host = ctx.place.address("chat");
  const args = tool === "python3"
    ? ["-c", SEED_CLIENT, String(port), root, host]
    : ["s_client", "-connect", `${host}:${port}`, "-tls1_2", "-cipher", "AES128-SHA"];
  ctx.sink(`* ${tool}: a TLS 1.2 client offering only AES128-SHA (the seed's set_ciphers)`);
  // In its own netlab host, as the other clients.
  const [command, ...argv] = [...ctx.place.wrapper(tool), tool, ...args];
  const out = await new Deno.Command(command!, {
    args: argv,
    stdin: "null",
    stdout: "piped",
    stderr: "piped",
  }).output();
  const text = new TextDecoder().decode(out.stdout) + new TextDecoder().decode(out.stderr);
  const refused = tool === "python3"
    ? /^refused: .*HANDSHAKE_FAILURE/im.test(text)
    : !out.success && /handshake failure|alert number 40/i.test(text);
  if (!refused) throw new ScenarioError(`AES128-SHA was not refused: ${text.trim().slice(0, 200)}`);
  const line = tool === "python3"
    ? text.trim().split("\n")[0]!
    : "refused: sslv3 alert handshake failure";
  ctx.sink(`  [${tool}] ${line}`);
  return `AES128-SHA ${line} (${tool})`;
}

function chatClient(
  ctx: Context<"chat">,
  nick: string,
  args: string[],
  tls12 = false,
): RunningProcess {
  return ctx.actors.spawn(`chat ${nick}`, "actors/chat.ts", [
    "client",
    "--nick",
    nick,
    "--server",
    at(ctx, "chat"),
    "--ca-cert",
    `${ctx.dir}/chat/cuhk.cer`,
    "--server-name",
    "chat",
    ...(tls12 ? ["--tls12"] : []),
    ...args,
  ], ctx.tlsEnv);
}

async function startChat(ctx: Context<"chat">): Promise<void> {
  // No CA server in this scenario: 'ca init' makes the root that 'ca issue' signs with.
  await ctx.actors.run("ca init", "actors/ca.ts", ["init", "--data-dir", `${ctx.dir}/ca`]);
  // The chat's service name, and localhost for independent clients (the seed's Python client).
  await issueServer(ctx, "chat", `${ctx.dir}/chat`, ["localhost"]);
  await ctx.actors.serve(
    "chat server",
    "actors/chat.ts",
    [
      "serve",
      ...listenArgs(ctx, "chat"),
      "--port",
      String(ctx.ports.chat),
      "--cert",
      `${ctx.dir}/chat/chat.cer`,
      "--key",
      `${ctx.dir}/chat/chat.key`,
    ],
    // With the --allow-ffi that 'deno task chat' grants (denoRunArgs): TCP_NODELAY, then revoked.
    ctx.tlsEnv,
  );
}

export const CHAT_TLS13 = scenario({
  name: "chat-tls13",
  title: "System 3: three chat clients over TLS 1.3",
  ports: ["chat"],
  capture: (p) => [p.chat],
  // Each client's lane is named by the nickname it joins with (its decrypted `hello`).
  actors: (p) => ({
    servers: { [p.chat]: "chat server" },
    clients: { [p.chat]: "client" },
    byNickname: [p.chat],
    numbered: [p.chat],
    order: ["chat server"],
  }),
  tls: (p) => ({
    serverPorts: [p.chat],
    expect: [{ name: "tls13", count: 3 }],
    packets: [{ name: "tls13-packets", count: 3 }],
    timing: true,
  }),
  async run(ctx) {
    await startChat(ctx);
    const alice = chatClient(ctx, "alice", [
      "--expect",
      "carol joined",
      "--send",
      "hello from alice",
      "--expect",
      "<carol> bye all",
    ]);
    await alice.waitFor(/joined as alice/, START_TIMEOUT_MS);
    const bob = chatClient(ctx, "bob", [
      "--expect",
      "carol joined",
      "--send",
      "/who",
      "--expect",
      "<carol> bye all",
    ]);
    await bob.waitFor(/joined as bob/, START_TIMEOUT_MS);
    const carol = chatClient(ctx, "carol", [
      "--expect",
      "<alice> hello from alice",
      "--send",
      "/msg bob psst, bob",
      "--send",
      "bye all",
    ]);
    await Promise.all([alice, bob, carol].map((c) => ctx.actors.finish(c)));
  },
});

export const CHAT_TLS12 = scenario({
  name: "chat-tls12",
  title: "System 3: a chat client over TLS 1.2, and AES128-SHA refused",
  ports: ["chat"],
  capture: (p) => [p.chat],
  // dave by the nickname he joins with; the client refused in the handshake (no `hello`) by the
  // tool that ran it.
  actors: (p, ctx) => ({
    servers: { [p.chat]: "chat server" },
    clients: { [p.chat]: "client" },
    byNickname: [p.chat],
    inOrder: { [p.chat]: refusalTools(ctx.notes) },
    numbered: [p.chat],
    order: ["chat server"],
  }),
  tls: (p, ctx) => {
    const refused = ctx.notes.some((n) => n.startsWith("AES128-SHA refused"));
    return {
      serverPorts: [p.chat],
      expect: [
        { name: "tls12", count: 1 },
        ...(refused ? [{ name: "aes128-sha-refused", count: 1 }] : []),
      ],
      packets: [
        { name: "tls12-packets", count: 1 },
        ...(refused ? [{ name: "aes128-sha-refused-packets", count: 1 }] : []),
      ],
      timing: true,
    };
  },
  async run(ctx) {
    await startChat(ctx);
    const dave = chatClient(ctx, "dave", [
      "--send",
      "hello over TLS 1.2, as in the seed's capture",
      "--send",
      "/who",
      "--expect",
      "online \\(1\\)",
    ], true);
    await ctx.actors.finish(dave);
    ctx.notes.push(await offerAes128Sha(ctx, ctx.ports.chat, `${ctx.dir}/chat/cuhk.cer`));
  },
});
