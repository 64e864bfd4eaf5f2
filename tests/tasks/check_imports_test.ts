import assert from "node:assert/strict";
import { checkImports, importsOf } from "../../tasks/check_imports.ts";
import { PROJECT_ROOT, runActor, tempDir } from "../_fixtures/helpers.ts";

/** Writes `files` (path → source) under `root`. */
async function plant(root: string, files: Record<string, string>): Promise<void> {
  for (const [path, source] of Object.entries(files)) {
    await Deno.mkdir(`${root}/${path.slice(0, path.lastIndexOf("/"))}`, { recursive: true });
    await Deno.writeTextFile(`${root}/${path}`, source);
  }
}

/** A small tree that follows every rule. */
const CLEAN: Record<string, string> = {
  "lib/wire/frame.ts": "export const frame = 1;\n",
  "lib/wire/mod.ts": 'export * from "./frame.ts";\n',
  "lib/pki/pki.ts": 'import { frame } from "../wire/mod.ts";\nexport const pki = frame;\n',
  "lib/pki/mod.ts": 'export * from "./pki.ts";\n',
  "lib/bank/protocol.ts": 'import { frame } from "../wire/mod.ts";\nexport const bank = frame;\n',
  "lib/bank/server.ts": 'import { pki } from "../pki/mod.ts";\nexport const serve = pki;\n',
  "lib/bank/mod.ts": 'export * from "./protocol.ts";\nexport * from "./server.ts";\n',
  "lib/wireshark/dissector.ts":
    'import { bank } from "../bank/protocol.ts";\nexport const d = bank;\n',
  "lib/wireshark/mod.ts": 'export * from "./dissector.ts";\n',
  "actors/bank.ts": 'import { serve } from "../lib/bank/mod.ts";\nconsole.log(serve);\n',
};

Deno.test("the project's own tree keeps the import rules", async () => {
  assert.deepEqual(await checkImports(PROJECT_ROOT), []);
});

Deno.test("importsOf finds static, type-only, re-export and dynamic imports, not comments", () => {
  const source = [
    '// import { x } from "./commented.ts";',
    '/* import "./block.ts"; */',
    'import { a } from "./a.ts";',
    'import type { B } from "../b/mod.ts";',
    "import {\n  c,\n  d,\n} from './c.ts';",
    'export * from "./e.ts";',
    'import "./side.ts";',
    'const m = await import("./dyn.ts");',
    'import x509 from "npm:@peculiar/x509";',
  ].join("\n");
  assert.deepEqual(importsOf(source), [
    "./a.ts",
    "../b/mod.ts",
    "./c.ts",
    "./e.ts",
    "./side.ts",
    "./dyn.ts",
  ]);
});

Deno.test("a clean planted tree passes; each planted violation is reported by its rule", async () => {
  await using dir = await tempDir("lab-imports-");
  await plant(dir.path, CLEAN);
  assert.deepEqual(await checkImports(dir.path), []);

  const cases: [string, Record<string, string>][] = [
    // A system importing another system.
    ["system", {
      "lib/chat/server.ts": 'import { bank } from "../bank/mod.ts";\nexport const c = bank;\n',
      "lib/chat/mod.ts": 'export * from "./server.ts";\n',
    }],
    // lib/wireshark reading more of a system than its protocol.ts.
    ["wireshark", {
      "lib/wireshark/dissector.ts":
        'import { serve } from "../bank/server.ts";\nexport const d = serve;\n',
    }],
    // A foundation folder importing a system.
    ["layer", {
      "lib/wire/frame.ts": 'import { bank } from "../bank/mod.ts";\nexport const frame = bank;\n',
    }],
    // An actor reaching past a folder's mod.ts.
    ["actor", {
      "actors/bank.ts": 'import { serve } from "../lib/bank/server.ts";\nconsole.log(serve);\n',
    }],
    // lib importing tasks/.
    ["lib-outside", {
      "tasks/x.ts": "export const x = 1;\n",
      "lib/pki/pki.ts": 'import { x } from "../../tasks/x.ts";\nexport const pki = x;\n',
    }],
    // A file in lib/ over the size limit.
    ["size", {
      "lib/bank/server.ts": "export const serve = 1;\n" + "// filler\n".repeat(600),
    }],
    // A file-level cycle inside one folder.
    ["cycle", {
      "lib/bank/protocol.ts": 'import { serve } from "./server.ts";\nexport const bank = serve;\n',
      "lib/bank/server.ts": 'import { bank } from "./protocol.ts";\nexport const serve = bank;\n',
    }],
  ];
  for (const [rule, files] of cases) {
    await Deno.remove(dir.path, { recursive: true });
    await plant(dir.path, { ...CLEAN, ...files });
    const violations = await checkImports(dir.path);
    assert.ok(
      violations.some((v) => v.rule === rule),
      `planted ${rule} violation not reported: ${JSON.stringify(violations)}`,
    );
  }
});

Deno.test("deno task check's import step exits 1 on a planted violation, 0 on a clean tree", async () => {
  await using dir = await tempDir("lab-imports-");
  await plant(dir.path, CLEAN);
  const ok = await runActor("tasks/check_imports.ts", ["--root", dir.path], {
    permissions: [`--allow-read`],
  });
  assert.equal(ok.code, 0, ok.stderr);
  await plant(dir.path, {
    "lib/wire/frame.ts": 'import { bank } from "../bank/mod.ts";\nexport const frame = bank;\n',
  });
  const bad = await runActor("tasks/check_imports.ts", ["--root", dir.path], {
    permissions: [`--allow-read`],
  });
  assert.equal(bad.code, 1);
  assert.match(bad.stderr, /lib\/wire\/frame\.ts: \[layer\]/);
  assert.match(bad.stderr, /\[folder-cycle\]/);
});
