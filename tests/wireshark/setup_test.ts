/**
 * `deno task setup` with a PATH that lacks the capture tools: as root with apt-get it installs
 * tshark non-interactively (a stand-in apt-get records what it was asked and provides the tools);
 * without apt-get it prints exactly how, and exits 1.
 */

import assert from "node:assert/strict";
import { run, runActor, tempDir } from "../_fixtures/helpers.ts";

const PERMISSIONS = ["--allow-run=apt-get,tshark,dumpcap,editcap", "--allow-sys=uid"];

const FAKE_APT = `#!/bin/sh
[ "$1" = --version ] && exit 0
dir="\${0%/*}"
echo "DEBIAN_FRONTEND=$DEBIAN_FRONTEND $*" >> "$dir/apt.log"
if [ "$1" = install ]; then
  for t in tshark dumpcap editcap; do
    printf '#!/bin/sh\\necho "%s (stand-in) 9.9"\\n' "$t" > "$dir/$t"
    /bin/chmod 755 "$dir/$t"
  done
fi
`;

Deno.test("setup: installs tshark with apt-get when root, else prints how", async () => {
  await using dir = await tempDir("lab-setup-");
  const bin = `${dir.path}/bin`;
  await Deno.mkdir(bin);
  // No apt-get, no tools: the exact commands, exit 1.
  const none = await runActor("tasks/setup.ts", [], {
    permissions: PERMISSIONS,
    env: { PATH: bin },
  });
  assert.equal(none.code, 1, `exit ${none.code}: ${none.stderr}`);
  assert.match(none.stderr, /Missing: dumpcap, editcap, tshark/);
  assert.match(
    none.stderr,
    /sudo apt-get update && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y tshark/,
  );
  assert.match(none.stderr, /brew install wireshark/);
  // --check never installs, even as root with apt-get.
  await Deno.writeTextFile(`${bin}/apt-get`, FAKE_APT, { mode: 0o755 });
  const check = await runActor("tasks/setup.ts", ["--check"], {
    permissions: PERMISSIONS,
    env: { PATH: bin },
  });
  assert.equal(check.code, 1);
  await assert.rejects(Deno.stat(`${bin}/apt.log`));
  const install = await runActor("tasks/setup.ts", [], {
    permissions: PERMISSIONS,
    env: { PATH: bin },
  });
  // Deno.uid() needs --allow-sys, which the test task does not grant; id(1) says the same.
  const root = (await run("id", ["-u"])).stdout.trim() === "0";
  if (root) {
    assert.equal(install.code, 0, install.stderr);
    assert.deepEqual((await Deno.readTextFile(`${bin}/apt.log`)).trim().split("\n"), [
      // lib/runtime's aptInstall, the netlab's too.
      "DEBIAN_FRONTEND=noninteractive update -qq",
      "DEBIAN_FRONTEND=noninteractive install -y -qq --no-install-recommends tshark",
    ]);
    // Installed after the task started: Deno's --allow-run=tshark did not resolve it then, so
    // the task says to run it again rather than claiming a version it cannot check.
    assert.match(install.stderr, /Installed tshark, dumpcap and editcap \(run the task again/);
    assert.match(install.stdout, /tshark: installed/);
    const again = await runActor("tasks/setup.ts", [], {
      permissions: PERMISSIONS,
      env: { PATH: bin },
    });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /tshark: tshark \(stand-in\) 9\.9/);
    assert.equal((await Deno.readTextFile(`${bin}/apt.log`)).trim().split("\n").length, 2);
  } else {
    // Not root: never calls apt-get, prints how.
    assert.equal(install.code, 1);
    await assert.rejects(Deno.stat(`${bin}/apt.log`));
    assert.match(install.stderr, /sudo apt-get/);
  }
});
