#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=. --allow-run
/**
 * Many clients at once: connects N chat clients (default 500) over TLS to a real chat server
 * process, then has one client send messages and measures, for each, how many of the others
 * received it, the delivery rate, and the slowest delivery.
 *
 *     deno task bench:chat [--clients 500] [--messages 10] [--concurrency 50] [--json]
 *
 * Everything lives in a temporary directory under data/ that is deleted at the end: a CA and the
 * server's certificate. The server is the real actor (`actors/chat.ts serve`) in its own process;
 * the clients all run in this one (one TLS connection each, like separate users).
 */

import {
  ensureDir,
  parseCommand,
  parsePositiveInt,
  percentile,
  PROJECT_ROOT as ROOT,
  runMain,
  spawnDeno,
  UsageError,
  writeFileAtomic,
  writeSecretFile,
} from "../lib/runtime/mod.ts";
import { CertificateAuthority } from "../lib/ca/mod.ts";
import { ChatClient } from "../lib/chat/mod.ts";
import { certificatePem } from "../lib/pki/mod.ts";
import { cpuWindow, peakRss } from "./bench_actors.ts";

const USAGE = `Usage: deno task bench:chat [options]

Connects many TLS chat clients to a chat server process and measures broadcast delivery.

Options:
  --clients N        clients connected at once (default 500)
  --messages N       rounds: each sender sends one message per round (default 10)
  --senders N        clients that send in each round, all at once (default 1)
  --concurrency N    TLS handshakes in flight while connecting (default 50)
  --timeout SEC      how long one message may take to reach everyone (default 30)
  --json             print the results as JSON`;

/** A client that records when each benchmark message (`bench ROUND SENDER`) reached it. */
class Receiver {
  readonly client: ChatClient;
  /** This client's number: its own messages coming back are not deliveries. */
  readonly index: number;
  /** Per round: arrival times (performance.now()) of the others' messages of that round. */
  readonly arrivals = new Map<number, number[]>();
  #waiter: { round: number; count: number; wake: () => void } | null = null;
  ended = false;

  constructor(client: ChatClient, index: number) {
    this.client = client;
    this.index = index;
    (async () => {
      try {
        for await (const msg of client.messages()) {
          if (msg.type !== "said") continue;
          const m = /^bench (\d+) (\d+)$/.exec(msg.text);
          if (!m || Number(m[2]) === index) continue;
          const round = Number(m[1]);
          const list = this.arrivals.get(round) ?? [];
          list.push(performance.now());
          this.arrivals.set(round, list);
          const w = this.#waiter;
          if (w && w.round === round && list.length >= w.count) w.wake();
        }
      } catch {
        // Counted as not delivered.
      } finally {
        this.ended = true;
        this.#waiter?.wake();
      }
    })();
  }

  /** Resolves when `count` messages of `round` arrived, the connection ended, or the deadline. */
  received(round: number, count: number, deadline: number): Promise<void> {
    if ((this.arrivals.get(round)?.length ?? 0) >= count || this.ended) return Promise.resolve();
    return new Promise((resolve) => {
      const timer = setTimeout(() => wake(), Math.max(0, deadline - performance.now()));
      const wake = () => {
        clearTimeout(timer);
        this.#waiter = null;
        resolve();
      };
      this.#waiter = { round, count, wake };
    });
  }
}

interface RoundResult {
  delivered: number;
  expected: number;
  slowestMs: number;
  medianMs: number;
  p99Ms: number;
  /** Deliveries per second: the others reached divided by the time to reach the last one. */
  perSecond: number;
}

/**
 * The chat server as `deno task chat serve` runs it, through the one process harness (which gives
 * it the actors' memory settings); its warnings are shown as they come.
 */
async function startServer(dir: string, maxClients: number) {
  const child = spawnDeno(`${ROOT}/actors/chat.ts`, [
    "serve",
    "--port",
    "0",
    "--cert",
    `${dir}/chat.cer`,
    "--key",
    `${dir}/chat.key`,
    "--max-clients",
    String(maxClients),
    // Every benchmark client comes from 127.0.0.1: the per-address cap (16) would refuse them.
    "--max-per-address",
    String(maxClients),
    "--quiet",
  ], {
    // spawnDeno adds the --allow-ffi that 'deno task chat' grants: TCP_NODELAY, then revoked.
    permissions: ["--allow-net=127.0.0.1", `--allow-read=${dir}`],
    onLine: (line, from) => {
      if (from === "stderr" && !/listening on/.test(line)) console.error(line);
    },
  });
  try {
    const m = await child.waitFor(/listening on 127\.0\.0\.1:(\d+)/, 30_000);
    return { proc: child, port: Number(m[1]) };
  } catch (err) {
    child.kill("SIGKILL");
    await child.status;
    throw new Error(`The chat server did not start: ${child.tail()} (${err})`);
  }
}

export async function main(args: string[]): Promise<number | void> {
  const parsed = parseCommand(args, {
    name: "bench:chat",
    usage: USAGE,
    options: {
      clients: { type: "string", default: "500" },
      messages: { type: "string", default: "10" },
      senders: { type: "string", default: "1" },
      concurrency: { type: "string", default: "50" },
      timeout: { type: "string", default: "30" },
      json: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const n = parsePositiveInt(parsed.values.clients, "clients");
  const rounds = parsePositiveInt(parsed.values.messages, "messages");
  const senders = parsePositiveInt(parsed.values.senders, "senders");
  if (senders > n) throw new UsageError("--senders cannot exceed --clients");
  const concurrency = parsePositiveInt(parsed.values.concurrency, "concurrency");
  const timeoutMs = parsePositiveInt(parsed.values.timeout, "timeout") * 1000;
  const progress = (s: string) => Deno.stderr.writeSync(new TextEncoder().encode(s + "\n"));

  await ensureDir(`${ROOT}/data`);
  const dir = await Deno.makeTempDir({ dir: `${ROOT}/data`, prefix: "bench-chat-" });
  let server: Awaited<ReturnType<typeof startServer>> | undefined;
  const receivers: Receiver[] = [];
  try {
    {
      using ca = await CertificateAuthority.open(`${dir}/ca`, { rootBits: 2048 });
      const { cert, keyPem } = await ca.issueServer({
        name: "chat",
        dnsNames: ["localhost"],
        ipAddresses: ["127.0.0.1"],
      });
      await writeSecretFile(`${dir}/chat.key`, keyPem);
      await writeFileAtomic(`${dir}/chat.cer`, certificatePem(cert));
      await writeFileAtomic(`${dir}/cuhk.cer`, ca.rootPem);
    }
    const rootPem = await Deno.readTextFile(`${dir}/cuhk.cer`);
    server = await startServer(dir, n + 10);
    const port = server.port;

    progress(`connecting ${n} TLS clients to 127.0.0.1:${port} (${concurrency} at a time)…`);
    const connectStart = performance.now();
    let next = 0;
    const worker = async () => {
      while (next < n) {
        const i = next++;
        const client = await ChatClient.join({
          hostname: "127.0.0.1",
          port,
          caCerts: [rootPem],
          nick: `client${i}`,
          timeoutMs: 60_000,
          welcomeTimeoutMs: 60_000,
        });
        receivers[i] = new Receiver(client, i);
        if ((i + 1) % 100 === 0) progress(`  ${i + 1} joined`);
      }
    };
    await Promise.all(Array.from({ length: Math.min(concurrency, n) }, worker));
    const connectMs = performance.now() - connectStart;
    progress(
      `${n} clients joined in ${(connectMs / 1000).toFixed(1)} s; letting join notices settle…`,
    );
    // Every join is announced to everyone already there: let that traffic drain first.
    await new Promise((r) => setTimeout(r, 2000));

    const results: RoundResult[] = [];
    // CPU time over the rounds only (not the joins): this process (the clients) and the server.
    const cpu = { clients: 0, server: 0 };
    for (let r = 0; r < rounds; r++) {
      const window = await cpuWindow(server.proc.child.pid);
      const sent = performance.now();
      await Promise.all(
        receivers.slice(0, senders).map((x, i) =>
          // A sender the server dropped counts as messages not delivered.
          x.client.say(`bench ${r} ${i}`).catch(() => {})
        ),
      );
      const deadline = sent + timeoutMs;
      await Promise.all(
        receivers.map((x, i) => x.received(r, i < senders ? senders - 1 : senders, deadline)),
      );
      const used = await window();
      cpu.clients += used.self;
      cpu.server += used.other;
      const latencies = receivers.flatMap((x) => (x.arrivals.get(r) ?? []).map((t) => t - sent));
      latencies.sort((a, b) => a - b);
      const slowest = latencies.at(-1) ?? NaN;
      results.push({
        delivered: latencies.length,
        expected: senders * (n - 1),
        slowestMs: slowest,
        medianMs: percentile(latencies, 50),
        p99Ms: percentile(latencies, 99),
        perSecond: latencies.length / (slowest / 1000),
      });
      const x = results.at(-1)!;
      progress(
        `  round ${r + 1}/${rounds}: ${x.delivered}/${x.expected} delivered, slowest ${
          x.slowestMs.toFixed(1)
        } ms, median ${x.medianMs.toFixed(1)} ms, ${Math.round(x.perSecond)} deliveries/s`,
      );
      // The server's default rate limit is 5 messages per second per client.
      await new Promise((res) => setTimeout(res, 250));
    }
    const delivered = results.reduce((s, x) => s + x.delivered, 0);
    const expected = results.reduce((s, x) => s + x.expected, 0);
    const serverPeakRssMiB = ((await peakRss(server.proc.child.pid)) ?? NaN) / 1024 ** 2;
    const summary = {
      clients: n,
      rounds: rounds,
      senders,
      connectSeconds: connectMs / 1000,
      delivered,
      expected,
      deliveredPercent: (100 * delivered) / expected,
      slowestMs: Math.max(...results.map((x) => x.slowestMs)),
      medianSlowestMs: percentile(results.map((x) => x.slowestMs).sort((a, b) => a - b), 50),
      medianDeliveriesPerSecond: percentile(
        results.map((x) => x.perSecond).sort((a, b) => a - b),
        50,
      ),
      serverPeakRssMiB,
      clientCpuUsPerDelivery: (cpu.clients * 1000) / delivered,
      serverCpuUsPerDelivery: (cpu.server * 1000) / delivered,
      results,
    };
    if (parsed.values.json) {
      console.log(JSON.stringify(summary, null, 2));
    } else {
      console.log(
        `${n} clients over TLS, ${rounds} rounds of ${senders} message(s) sent at once:\n` +
          `  delivered          ${delivered}/${expected} (${
            summary.deliveredPercent.toFixed(1)
          }%)\n` +
          `  slowest delivery   ${summary.slowestMs.toFixed(1)} ms (median over rounds ${
            summary.medianSlowestMs.toFixed(1)
          } ms)\n` +
          `  delivery rate      ${
            Math.round(summary.medianDeliveriesPerSecond)
          } deliveries/s (median over rounds)\n` +
          `  connect + join     ${summary.connectSeconds.toFixed(1)} s for ${n} clients\n` +
          `  server peak RSS    ${serverPeakRssMiB.toFixed(0)} MiB (VmHWM)\n` +
          `  CPU per delivery   server ${summary.serverCpuUsPerDelivery.toFixed(1)} µs, clients ${
            summary.clientCpuUsPerDelivery.toFixed(1)
          } µs (over the rounds; the server's in 10 ms clock ticks, so use many rounds)`,
      );
    }
    return delivered === expected ? 0 : 1;
  } finally {
    for (const r of receivers) r?.client.close();
    if (server) {
      server.proc.kill("SIGINT");
      await server.proc.status;
    }
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
}

if (import.meta.main) await runMain("bench:chat", main);
