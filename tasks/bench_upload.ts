#!/usr/bin/env -S deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=. --allow-run
/**
 * Measures what a large report upload costs: the peak resident memory (VmHWM from
 * /proc/<pid>/status) of the Blackboard process and of the student process, and the throughput.
 *
 *     deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=. --allow-run \
 *       tasks/bench_upload.ts [--size-mib 1024] [--records aes-gcm|hmac] [--random]
 *
 * Everything lives in a temporary directory under data/ that is deleted at the end: a CA (served
 * in this process for the CRL), Blackboard's certificate, an enrolled student, and the file (sparse
 * by default, or random bytes with --random). Blackboard and the student run as the real actors.
 */

import {
  ensureDir,
  parseCommand,
  parsePositiveInt,
  PROJECT_ROOT as ROOT,
  runMain,
  RunningProcess,
  spawnDeno,
  StepLog,
  UsageError,
  writeFileAtomic,
  writeSecretFile,
} from "../lib/runtime/mod.ts";
import { CertificateAuthority, serveCa, storeCertificate, storeKey } from "../lib/ca/mod.ts";
import {
  certificatePem,
  createCsr,
  der,
  exportPrivateKeyPem,
  generateRsaKeyPair,
} from "../lib/pki/mod.ts";
import { peakRss } from "./bench_actors.ts";

const SID = "1155999999";
const MiB = 1024 * 1024;

const LISTENING = /listening on 127\.0\.0\.1:(\d+)/;

async function main(args: string[]): Promise<void> {
  const parsed = parseCommand(args, {
    name: "bench_upload",
    usage: `Usage: deno run --allow-net=127.0.0.1 --allow-read=. --allow-write=. --allow-run \\
         tasks/bench_upload.ts [--size-mib N] [--records aes-gcm|hmac] [--random]

Uploads an N MiB file (default 1024) from a student process to a Blackboard process and prints
each one's peak resident memory (VmHWM) and the throughput.`,
    options: {
      "size-mib": { type: "string", default: "1024" },
      records: { type: "string", default: "aes-gcm" },
      random: { type: "boolean", default: false },
    },
  });
  if (!parsed) return;
  const size = parsePositiveInt(parsed.values["size-mib"], "size-mib") * MiB;
  const records = parsed.values.records;
  if (records !== "aes-gcm" && records !== "hmac") {
    throw new UsageError(`--records must be aes-gcm or hmac, got '${records}'`);
  }
  await ensureDir(`${ROOT}/data`);
  const dir = await Deno.makeTempDir({ dir: `${ROOT}/data`, prefix: "bench-upload-" });
  const log = new StepLog("bench", { quiet: true });
  const ca = await CertificateAuthority.open(`${dir}/ca`, { rootBits: 2048 });
  const caServer = serveCa({ ca, log, port: 0 });
  let blackboard: RunningProcess | undefined;
  try {
    // Blackboard's certificate and an enrolled student, as `ca issue` and `student enroll` make them.
    const issued = await ca.issueServer({ name: "blackboard", ipAddresses: ["127.0.0.1"] });
    await ensureDir(`${dir}/bb`);
    await writeSecretFile(`${dir}/bb/blackboard.key`, issued.keyPem);
    await writeFileAtomic(`${dir}/bb/blackboard.cer`, certificatePem(issued.cert));
    const keys = await generateRsaKeyPair(2048);
    const { code } = ca.createCode(SID);
    const cert = await ca.enrol({ sid: SID, code, csr: der(await createCsr(keys, SID)) });
    const home = `${dir}/home`;
    await storeKey(home, await exportPrivateKeyPem(keys.privateKey));
    await storeCertificate(home, cert, ca.root);

    const file = `${dir}/report.bin`;
    if (parsed.values.random) {
      using f = await Deno.open(file, { write: true, create: true });
      const block = new Uint8Array(MiB);
      for (let off = 0; off < size; off += MiB) {
        crypto.getRandomValues(block.subarray(0, 65536));
        for (let i = 1; i < 16; i++) block.copyWithin(i * 65536, 0, 65536);
        let w = 0;
        const part = block.subarray(0, Math.min(MiB, size - off));
        while (w < part.length) w += await f.write(part.subarray(w));
      }
    } else {
      await Deno.writeFile(file, new Uint8Array());
      await Deno.truncate(file, size);
    }

    const permissions = [
      "--allow-net=127.0.0.1",
      `--allow-read=${ROOT}`,
      `--allow-write=${dir}`,
    ];
    blackboard = spawnDeno(
      `${ROOT}/actors/blackboard.ts`,
      [
        "serve",
        "--port",
        "0",
        "--data-dir",
        `${dir}/bb`,
        "--ca-cert",
        ca.rootPath,
        "--ca",
        `127.0.0.1:${caServer.port}`,
        "--max-report",
        String(Math.ceil(size / MiB) + 1),
        "--records",
        records,
      ],
      { permissions },
    );
    const port = (await blackboard.waitFor(LISTENING, 60_000))[1];

    const started = performance.now();
    const student = spawnDeno(
      `${ROOT}/actors/student.ts`,
      [
        "upload",
        "--sid",
        SID,
        "--home",
        home,
        "--file",
        file,
        "--blackboard",
        `127.0.0.1:${port}`,
        "--quiet",
        "--records",
        records,
      ],
      { permissions },
    );
    let studentPeak = 0;
    let bbPeak = 0;
    let running = true;
    const output = student.done.finally(() => (running = false));
    while (running) {
      studentPeak = Math.max(studentPeak, (await peakRss(student.child.pid)) ?? 0);
      bbPeak = Math.max(bbPeak, (await peakRss(blackboard.child.pid)) ?? 0);
      await new Promise((r) => setTimeout(r, 100));
    }
    const out = await output;
    const seconds = (performance.now() - started) / 1000;
    bbPeak = Math.max(bbPeak, (await peakRss(blackboard.child.pid)) ?? 0);
    if (out.code !== 0) throw new Error(`The student failed: ${out.stderr}`);
    const stored = await Deno.stat(`${dir}/bb/reports/${SID}/report.bin`);
    if (stored.size !== size) throw new Error(`Stored ${stored.size} bytes, expected ${size}`);
    console.log(out.stdout.trim());
    console.log(
      `Uploaded ${size / MiB} MiB${records === "aes-gcm" ? " (AES-GCM)" : " (HMAC)"} in ${
        seconds.toFixed(1)
      } s (${(size / MiB / seconds).toFixed(0)} MiB/s, both processes start-up included)`,
    );
    console.log(
      `Peak resident memory (VmHWM): student ${(studentPeak / MiB).toFixed(0)} MiB, Blackboard ${
        (bbPeak / MiB).toFixed(0)
      } MiB`,
    );
  } finally {
    await blackboard?.stop("SIGINT");
    await caServer.close();
    ca.close();
    await Deno.remove(dir, { recursive: true });
  }
}

if (import.meta.main) await runMain("bench_upload", main);
