/**
 * The README's "Running it in a classroom" walk-through, exactly as written for two machines, run
 * between two network namespaces joined by a veth pair: the instructor's lines (the README's
 * `sh classroom-instructor` block) in one, with the instructor's address 192.168.1.10 replaced by
 * 10.77.0.1, and the student's (`sh classroom-student`) in the other (10.77.0.2); then the
 * `-more` blocks (Bob and the chat). Each side has its own copy of the project, as each machine would; the root certificate goes from one to the other
 * "out of band" (the test copies the file), and the student compares fingerprints as told.
 *
 * Needs root and `ip` (iproute2) with network namespaces; without them the test is skipped, with
 * the reason printed. Its namespaces carry the prefix `labcls-` and lib/netlab's mark (the veths
 * are made inside them); leftovers of a crashed run (marked) are removed first, and everything made is removed at the end, on failure too.
 */

import assert from "node:assert/strict";
import { runCommand, RunningProcess } from "../../lib/runtime/mod.ts";
import { addMarkedNetns, removeMarkedNetns, whyNoNetns } from "../../lib/netlab/mod.ts";
import { fileSha256 } from "../_fixtures/blackboard.ts";
import { ROOT } from "../_fixtures/helpers.ts";

const README_ADDRESS = "192.168.1.10";
const INSTRUCTOR = "10.77.0.1";
const STUDENT = "10.77.0.2";
const PREFIX = "labcls-";
const SID = "1155123456";

/** The lines of the README's fenced block `sh MARKER`, comments and blank lines dropped. */
export function readmeBlock(readme: string, marker: string): string[] {
  const m = new RegExp("^```sh " + marker + "\\n([\\s\\S]*?)^```$", "m").exec(readme);
  if (!m) throw new Error(`README.md has no \`\`\`sh ${marker} block`);
  return m[1]!.split("\n").map((l) => l.replace(/\s+#.*$/, "").trim()).filter((l) => l !== "");
}

async function ip(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return await runCommand("ip", args, { timeoutMs: 20_000 });
}

async function mustIp(args: string[]): Promise<string> {
  const r = await ip(args);
  if (r.code !== 0) throw new Error(`ip ${args.join(" ")}: ${r.stderr.trim()}`);
  return r.stdout;
}

/** Why network namespaces cannot be used here, or undefined when they can (lib/netlab's probe). */
async function unavailableHere(): Promise<string | undefined> {
  const uid = (await runCommand("id", ["-u"]).catch(() => undefined))?.stdout.trim();
  if (uid !== "0") return `needs root (uid ${uid ?? "unknown"})`;
  return await whyNoNetns(PREFIX).catch((err) => `${err}`);
}

/** Removes a crashed run's namespaces and /etc/netns folders (marked ones only; lib/netlab). */
async function removeLeftovers(): Promise<void> {
  await removeMarkedNetns(PREFIX);
}

/** A machine's own copy of the project: what `git clone` would give (the files deno task needs). */
async function projectCopy(dir: string): Promise<void> {
  await Deno.mkdir(dir, { recursive: true });
  const r = await runCommand("cp", [
    "-r",
    ...["deno.json", "deno.lock", "actors", "lib", "tasks"].map((f) => `${ROOT}/${f}`),
    dir,
  ]);
  if (r.code !== 0) throw new Error(`cp: ${r.stderr}`);
}

const unavailable = await unavailableHere();
if (unavailable !== undefined) {
  console.log(`tests/tasks/classroom_test.ts: SKIPPED, ${unavailable}`);
}

Deno.test({
  name:
    "classroom walk-through from the README, as written for two machines: the instructor's lines in one network namespace, the student's in another; enrol, upload (SHA-256), a message by host name, the bank and the chat (needs root and ip netns)",
  ignore: unavailable !== undefined,
  sanitizeResources: false,
  sanitizeOps: false,
  fn: async () => {
    const readme = await Deno.readTextFile(`${ROOT}/README.md`);
    const instructorLines = readmeBlock(readme, "classroom-instructor");
    const studentLines = readmeBlock(readme, "classroom-student");
    assert.equal(instructorLines.length, 3, instructorLines.join("\n"));
    assert.equal(studentLines.length, 3, studentLines.join("\n"));
    const instructorMore = readmeBlock(readme, "classroom-instructor-more");
    const studentMore = readmeBlock(readme, "classroom-student-more");
    const here = (line: string) => line.replaceAll(README_ADDRESS, INSTRUCTOR);

    await removeLeftovers();
    const tag = `${Deno.pid % 100000}`;
    const nsI = `${PREFIX}i${tag}`;
    const nsS = `${PREFIX}s${tag}`;
    // Inside the namespaces only (made there): no name of ours in the host's namespace.
    const vethI = `clsi${tag}`;
    const vethS = `clss${tag}`;
    const top = await Deno.makeTempDir({ prefix: "lab-classroom-" });
    const servers: RunningProcess[] = [];
    try {
      // Two machines on one LAN.
      // Marked as ours (lib/netlab), so removeLeftovers removes them and nothing else. The
      // student's machine knows the instructor's by name too (`ip netns exec` mounts the hosts
      // file over /etc/hosts).
      await addMarkedNetns(nsI, "127.0.0.1 localhost\n::1 localhost\n");
      await addMarkedNetns(
        nsS,
        `127.0.0.1 localhost\n::1 localhost\n${INSTRUCTOR} instructor.lab\n`,
      );
      await mustIp([
        "link",
        "add",
        vethI,
        "netns",
        nsI,
        "type",
        "veth",
        "peer",
        "name",
        vethS,
        "netns",
        nsS,
      ]);
      await mustIp(["-n", nsI, "addr", "add", `${INSTRUCTOR}/24`, "dev", vethI]);
      await mustIp(["-n", nsS, "addr", "add", `${STUDENT}/24`, "dev", vethS]);
      for (const [ns, link] of [[nsI, vethI], [nsS, vethS]]) {
        await mustIp(["-n", ns!, "link", "set", "lo", "up"]);
        await mustIp(["-n", ns!, "link", "set", link!, "up"]);
      }
      const instructorDir = `${top}/instructor`;
      const studentDir = `${top}/student`;
      await projectCopy(instructorDir);
      await projectCopy(studentDir);

      const inNs = (ns: string, cwd: string, line: string, name: string) =>
        new RunningProcess("ip", ["netns", "exec", ns, "sh", "-c", line], { cwd, name });
      const runLine = async (ns: string, cwd: string, line: string, stdin?: string) => {
        const r = await new RunningProcess("ip", ["netns", "exec", ns, "sh", "-c", line], {
          cwd,
          name: line.slice(0, 40),
          ...(stdin !== undefined ? { stdin } : {}),
        }).result(120_000);
        assert.equal(r.code, 0, `${line}\n${r.stderr}`);
        return r;
      };

      // The instructor: servers keep running (each in its own terminal), the rest runs to its end.
      const started = new Map<string, RunningProcess>();
      const instructor = async (lines: string[]): Promise<string> => {
        let stdout = "";
        for (const line of lines.map(here)) {
          const serve = /^deno task (\w+) serve\b/.exec(line);
          if (serve) {
            const server = inNs(nsI, instructorDir, `exec ${line}`, serve[1]!);
            servers.push(server);
            started.set(serve[1]!, server);
            await server.waitFor(
              new RegExp(`listening on ${INSTRUCTOR.replaceAll(".", "\\.")}:\\d+`),
            );
          } else {
            stdout += (await runLine(nsI, instructorDir, line)).stdout;
          }
        }
        return stdout;
      };
      const printed = await instructor(instructorLines);
      const fingerprint = started.get("ca")?.stderr.match(
        /root fingerprint \(SHA-256\) ([0-9A-F:]{95})/,
      )?.[1];
      // Enrolment codes, one a line, in the order of the class list.
      const codes = printed.match(/^[0-9a-f]{8}(?:-[0-9a-f]{8}){3}$/gm) ?? [];
      const blackboard = started.get("blackboard");
      assert.ok(fingerprint, "ca serve printed the root's fingerprint");
      assert.equal(codes.length, 2, `one code per student ID: ${codes.join(" | ")}`);
      assert.ok(blackboard, "Blackboard was started");

      // Out of band: the root file travels to the student's machine, and a report is there.
      await Deno.mkdir(`${studentDir}/data`, { recursive: true });
      await Deno.copyFile(`${instructorDir}/data/ca/cuhk.cer`, `${studentDir}/data/cuhk.cer`);
      const size = 5 * 65536;
      const report = new Uint8Array(size);
      for (let i = 0; i < size; i += 65536) crypto.getRandomValues(report.subarray(i, i + 65536));
      await Deno.writeFile(`${studentDir}/data/report.pdf`, report);
      const reportHash = await fileSha256(`${studentDir}/data/report.pdf`);

      // The student.
      const out: string[] = [];
      for (const line of studentLines.map(here)) {
        const r = await runLine(nsS, studentDir, line.replace(/\bCODE\b/, codes[0]!));
        out.push(r.stdout + r.stderr);
      }
      assert.match(
        out[0]!,
        new RegExp(`^data/cuhk\\.cer\\nSHA-256 fingerprint ${fingerprint}$`, "m"),
      );
      assert.match(out[1]!, new RegExp(`SID: ${SID} sign finished\\.`));
      assert.match(
        out[1]!,
        new RegExp(`sending CSR \\(CN=${SID}\\) to the CA at ${INSTRUCTOR}:9335`),
      );
      assert.ok(await Deno.stat(`${studentDir}/data/students/${SID}/student.cer`));
      assert.match(
        out[2]!,
        new RegExp(`^Receipt: stored as .*, ${size} bytes, SHA-256 ${reportHash}$`, "m"),
      );
      await blackboard!.waitFor(
        new RegExp(`Report from ${SID}: .* \\(${size} bytes, SHA-256 ${reportHash}\\)`),
      );
      // It crossed the link: Blackboard saw the student's own address.
      assert.match(
        blackboard!.stderr,
        new RegExp(`request from ${STUDENT.replaceAll(".", "\\.")}:\\d+`),
      );

      // By name as well as by address: the launcher allows the name, the actor resolves it.
      const byName = await runLine(
        nsS,
        studentDir,
        `deno task student send --sid ${SID} --message "hello by name" --blackboard instructor.lab:3141`,
      );
      assert.match(byName.stderr, /STEP 6 message sent/);
      await blackboard!.waitFor(new RegExp(`Message from ${SID}: hello by name`));

      // The other two systems, as written: Bob and the chat on the instructor's machine.
      await instructor(instructorMore);
      const bob = started.get("bank");
      const chat = started.get("chat");
      assert.ok(bob && chat, "Bob and the chat were started");
      const [bankLine, chatLine] = studentMore.map(here);
      assert.match(bankLine!, /^deno task bank client /);
      assert.match(chatLine!, /^deno task chat client /);
      const bank = await runLine(nsS, studentDir, bankLine!);
      assert.match(bank.stdout, /^deposited 10\.00, balance 10\.00\nbalance 10\.00\n$/);
      assert.match(bob.stderr, new RegExp(`${STUDENT.replaceAll(".", "\\.")}:\\d+`));
      // The chat client as a student types into it (here on standard input).
      const talk = await runLine(nsS, studentDir, chatLine!, "hello class\n/quit\n");
      assert.match(talk.stdout, /joined as alice/);
      assert.match(talk.stdout, /<alice> hello class/);
      assert.match(
        talk.stderr,
        /server certificate verified against data\/cuhk\.cer \(name chat\)/,
      );
    } finally {
      // Ctrl-C in each server's terminal; SIGTERM after 10 s.
      for (const server of servers) server.kill("SIGINT");
      await Promise.all(servers.map((s) => s.result(10_000)));
      await removeLeftovers();
      await Deno.remove(top, { recursive: true }).catch(() => {});
    }
    const left = (await ip(["netns", "list"])).stdout;
    assert.doesNotMatch(left, new RegExp(`^${PREFIX}`, "m"), "no namespace left behind");
    const etc = await Array.fromAsync(Deno.readDir("/etc/netns")).catch(() => []);
    assert.deepEqual(etc.filter((e) => e.name.startsWith(PREFIX)), [], "no /etc/netns folder left");
  },
});
