/**
 * The ladder diagrams in a real browser: headless Chromium (Debian's `chromium`), driven through
 * puppeteer-core by lib/wireshark/browser.ts, launched once for the whole file. Every page of every
 * capture scenario's diagram is drawn by the lab's own code from real capture data
 * (tests/_fixtures/ladders), then opened as its HTML page in the projector view (1280 px wide) and
 * measured in the DOM:
 *
 * - no text (an arrow's label, a red note, a band, a time, a lane's name, the title) overlaps
 *   another, an arrowhead or an arrow;
 * - where a lane line crosses a label, a note or a band, the browser hits the label there: the line
 *   passes behind it;
 * - no text is smaller than 14 px, and the diagram fits the projector's width;
 * - each page's PNG is the SVG's own size, drawn by Chromium (for a few scenarios: a PNG takes
 *   half a second);
 * - the page links lead from page to page (clicked, and with the ← and → keys).
 *
 * Chromium must be installed (`apt-get install -y chromium`; .ci/run installs it): without it this
 * file fails, as tests/chat/interop_test.ts does without openssl and the capture tests without
 * tshark. `deno task test:fast` leaves it out.
 */

import assert from "node:assert/strict";
import {
  CHROMIUM_HINT,
  DiagramBrowser,
  type DiagramFiles,
  fileUrl,
  findChromium,
  MIN_TEXT_PX,
  PROJECTOR,
  writeLadderFiles,
} from "../../lib/wireshark/mod.ts";
import { DATA_DIR, ensureDir } from "../../lib/runtime/mod.ts";
import { loadLadderInputs } from "../_fixtures/ladder_inputs.ts";

interface Box {
  x: number;
  y: number;
  w: number;
  h: number;
}

interface Measured {
  innerWidth: number;
  scrollWidth: number;
  scrollHeight: number;
  texts: Array<{ kind: string; text: string; box: Box; px: number }>;
  htmlTexts: Array<{ text: string; px: number }>;
  heads: Box[];
  shafts: Box[];
  crossings: Array<{ kind: string; text: string; lane: string; behind: boolean; hit: string }>;
  arrows: number;
  notes: Array<{ text: string; colour: string }>;
  bands: string[];
  lanes: string[];
  bodyText: string;
}

// The few DOM shapes the page-side code uses (this file is type-checked without the DOM library).
interface Rect {
  left: number;
  top: number;
  right: number;
  bottom: number;
  width: number;
  height: number;
}
interface El {
  tagName: string;
  textContent: string | null;
  childNodes: ArrayLike<{ nodeType: number; textContent: string | null }>;
  getBoundingClientRect(): Rect;
  getAttribute(name: string): string | null;
  closest(selector: string): El | null;
  querySelectorAll(selector: string): ArrayLike<El>;
  getScreenCTM?(): { a: number } | null;
}
interface PageGlobals {
  document: {
    querySelector(selector: string): El | null;
    querySelectorAll(selector: string): ArrayLike<El>;
    elementFromPoint(x: number, y: number): El | null;
    documentElement: { scrollWidth: number; scrollHeight: number };
    body: El & { innerText: string };
  };
  getComputedStyle(el: El): { fontSize: string; fill: string; display: string };
  innerWidth: number;
}

/** Runs in Chromium: boxes, font sizes and hit tests of the page's diagram. */
function measure(): Measured {
  const g = globalThis as unknown as PageGlobals;
  const doc = g.document;
  const box = (el: El): Box => {
    const r = el.getBoundingClientRect();
    return { x: r.left, y: r.top, w: r.width, h: r.height };
  };
  const all = (root: { querySelectorAll(s: string): ArrayLike<El> }, s: string) =>
    Array.from(root.querySelectorAll(s));
  const svg = doc.querySelector("figure svg.ladder")!;
  const kindOf = (t: El): string => {
    const group = t.closest("g.label, g.note, g.band, g.actor");
    return group ? group.getAttribute("class")! : t.getAttribute("class") ?? "text";
  };
  // A text's lines are its tspans.
  const textOf = (t: El) =>
    Array.from(t.querySelectorAll("tspan")).map((s) => s.textContent).join(" ");
  const texts = all(svg, "text").map((t) => ({
    kind: kindOf(t),
    text: textOf(t) || (t.textContent ?? ""),
    box: box(t),
    px: parseFloat(g.getComputedStyle(t).fontSize) * (t.getScreenCTM?.()?.a ?? 1),
  }));
  const htmlTexts = all(doc.body, "*")
    .filter((el) =>
      !el.closest("svg") && !["SCRIPT", "STYLE"].includes(el.tagName) &&
      g.getComputedStyle(el).display !== "none" &&
      Array.from(el.childNodes).some((n) => n.nodeType === 3 && (n.textContent ?? "").trim() !== "")
    )
    .map((el) => ({
      text: (el.textContent ?? "").trim().slice(0, 60),
      px: parseFloat(g.getComputedStyle(el).fontSize),
    }));
  const lanes = all(svg, "line.lane").map((l) => {
    const r = l.getBoundingClientRect();
    return {
      name: l.getAttribute("data-actor") ?? "",
      x: r.left + r.width / 2,
      top: r.top,
      bottom: r.bottom,
    };
  });
  const crossings: Measured["crossings"] = [];
  for (const group of all(svg, "g.label, g.note, g.band")) {
    const t = group.querySelectorAll("text")[0]!;
    const r = t.getBoundingClientRect();
    const y = r.top + r.height / 2;
    for (const lane of lanes) {
      if (lane.x <= r.left + 1 || lane.x >= r.right - 1 || y < lane.top || y > lane.bottom) {
        continue;
      }
      const hit = doc.elementFromPoint(lane.x, y);
      crossings.push({
        kind: group.getAttribute("class")!,
        text: textOf(t),
        lane: lane.name,
        behind: hit !== null && hit.closest("g.label, g.note, g.band") === group,
        hit: hit ? `${hit.tagName}.${hit.getAttribute("class") ?? ""}` : "nothing",
      });
    }
  }
  return {
    innerWidth: g.innerWidth,
    scrollWidth: doc.documentElement.scrollWidth,
    scrollHeight: doc.documentElement.scrollHeight,
    texts,
    htmlTexts,
    heads: all(svg, "path.head").map(box),
    shafts: all(svg, "line.shaft").map(box),
    crossings,
    arrows: all(svg, "g.arrow").length,
    notes: all(svg, "g.note text").map((t) => ({
      text: textOf(t),
      colour: g.getComputedStyle(t).fill,
    })),
    bands: all(svg, "g.band").map((b) => b.getAttribute("data-section") ?? ""),
    lanes: lanes.map((l) => l.name),
    bodyText: doc.body.innerText,
  };
}

/** The scenarios whose pages are also drawn as PNGs here (one of several pages, notes, TLS). */
const PNG_SCENARIOS = ["chat-tls13", "attack-bank-mitm", "seed"];

/** Whether two boxes overlap by more than half a pixel both ways. */
function overlaps(a: Box, b: Box): boolean {
  const e = 0.5;
  return a.x < b.x + b.w - e && b.x < a.x + a.w - e && a.y < b.y + b.h - e && b.y < a.y + a.h - e;
}

/** Width and height of a PNG, from its IHDR chunk. */
async function pngSize(path: string): Promise<{ width: number; height: number }> {
  const bytes = await Deno.readFile(path);
  assert.deepEqual([...bytes.slice(0, 8)], [0x89, 0x50, 0x4e, 0x47, 0x0d, 0x0a, 0x1a, 0x0a], path);
  const view = new DataView(bytes.buffer, bytes.byteOffset);
  assert.equal(new TextDecoder().decode(bytes.slice(12, 16)), "IHDR");
  return { width: view.getUint32(16), height: view.getUint32(20) };
}

async function openPage(page: Awaited<ReturnType<DiagramBrowser["newPage"]>>, html: string) {
  // In front of the tab that draws the PNGs: clicks and keys go to the tab in front.
  await page.bringToFront();
  await page.setViewport({ width: PROJECTOR.width, height: PROJECTOR.height });
  await page.goto(fileUrl(html), { waitUntil: "load" });
}

Deno.test("ladder diagrams in Chromium: no overlaps, lanes behind labels, 14 px text, PNGs, page links", async (t) => {
  const command = await findChromium();
  assert.ok(
    command,
    `Chromium is not installed: ${CHROMIUM_HINT} (or run 'deno task test:fast', which leaves ` +
      "this browser test out)",
  );
  const started = performance.now();
  await using browser = await DiagramBrowser.launch({ command });
  const launchMs = performance.now() - started;
  await ensureDir(DATA_DIR);
  const dir = await Deno.makeTempDir({ dir: DATA_DIR, prefix: "test-ladder-browser-" });
  const page = await browser.newPage();
  const drawn = new Map<string, DiagramFiles>();
  let crossingsChecked = 0;
  let pagesChecked = 0;
  let pngs = 0;
  try {
    for (const f of await loadLadderInputs()) {
      await t.step(f.name, async () => {
        const png = PNG_SCENARIOS.includes(f.name);
        const files = await writeLadderFiles(f.input, `${dir}/${f.name}`, {
          capture: `${dir}/${f.name}.pcapng`,
          ...(png ? { browser } : {}),
        });
        drawn.set(f.name, files);
        for (const p of files.pages) {
          const where = `${f.name} page ${p.number}`;
          // The PNG: Chromium's drawing of the SVG, at its size.
          assert.equal(p.png !== undefined, png, where);
          if (p.png) {
            assert.deepEqual(await pngSize(p.png), { width: p.width, height: p.height }, where);
            pngs++;
          }

          // The projector view: 1280 px wide. Every text at least 14 px, nothing wider.
          await openPage(page, p.html);
          const projector = await page.evaluate(measure);
          assert.ok(
            projector.scrollWidth <= PROJECTOR.width,
            `${where}: ${projector.scrollWidth} px`,
          );
          for (const x of [...projector.texts, ...projector.htmlTexts]) {
            assert.ok(x.px >= MIN_TEXT_PX, `${where}: "${x.text}" is ${x.px.toFixed(1)} px`);
          }
          assert.equal(
            projector.bodyText.includes("TLS decrypts itself"),
            f.name.startsWith("chat-"),
          );

          // The whole page in view (same width, so the same layout) for the hit tests.
          await page.setViewport({ width: PROJECTOR.width, height: projector.scrollHeight });
          const m = await page.evaluate(measure);
          assert.equal(m.arrows, p.arrows, where);
          assert.ok(m.arrows <= 25, where);
          const texts = m.texts.filter((x) => x.text.trim() !== "");
          for (let i = 0; i < texts.length; i++) {
            const a = texts[i]!;
            for (const b of texts.slice(i + 1)) {
              assert.ok(
                !overlaps(a.box, b.box),
                `${where}: ${a.kind} "${a.text}" overlaps ${b.kind} "${b.text}"`,
              );
            }
            for (const head of m.heads) {
              assert.ok(!overlaps(a.box, head), `${where}: ${a.kind} "${a.text}" on an arrowhead`);
            }
            for (const shaft of m.shafts) {
              assert.ok(!overlaps(a.box, shaft), `${where}: ${a.kind} "${a.text}" on an arrow`);
            }
          }
          for (const c of m.crossings) {
            assert.ok(
              c.behind,
              `${where}: the lane of ${c.lane} is over ${c.kind} "${c.text}" (${c.hit} on top)`,
            );
          }
          crossingsChecked += m.crossings.length;
          pagesChecked++;

          // Red notes where Trudy changed something; a band opens each half of an attack.
          for (const note of m.notes) assert.equal(note.colour, "rgb(161, 20, 15)", note.text);
          if (f.name.startsWith("attack-") && p.number === 1) assert.ok(m.bands.length >= 1);
          if (f.name.startsWith("chat-")) {
            assert.ok(!m.lanes.some((l) => /client/.test(l)), m.lanes.join(", "));
          }
        }
        const marks = f.input.marks?.length ?? 0;
        assert.equal(files.ladder.arrows.filter((a) => a.note !== undefined).length, marks);
      });
    }

    await t.step("an attack's halves: the default's band comes between them", async () => {
      const files = drawn.get("attack-bank-replay")!;
      assert.equal(files.pages.length, 1);
      await openPage(page, files.html);
      const order = await page.evaluate(() => {
        const g = globalThis as unknown as PageGlobals;
        return Array.from(g.document.querySelectorAll("svg.ladder g.band, svg.ladder g.arrow"))
          .map((el) => el.getAttribute("data-section") ?? "arrow");
      });
      const seedBand = order.indexOf("seed");
      const defaultBand = order.indexOf("default");
      assert.equal(seedBand, 0);
      assert.ok(defaultBand > seedBand + 1 && defaultBand < order.length - 1, order.join(" "));
    });

    await t.step("the chat's lanes are its people and tools", async () => {
      for (
        const [name, lanes] of [
          ["chat-tls13", ["chat server", "alice", "bob", "carol"]],
          ["chat-tls12", ["chat server", "dave", "python3"]],
        ] as const
      ) {
        await openPage(page, drawn.get(name)!.html);
        const shown = await page.evaluate(() => {
          const g = globalThis as unknown as PageGlobals;
          return Array.from(g.document.querySelectorAll("svg.ladder g.actor"))
            .map((el) => el.textContent ?? "");
        });
        assert.deepEqual(shown, lanes);
      }
    });

    await t.step("page links: from page to page by click and by the arrow keys", async () => {
      const files = drawn.get("chat-tls13")!;
      assert.equal(files.pages.length, 3);
      await openPage(page, files.html);
      const follow = async (what: string, action: () => Promise<void>, to: string) => {
        await Promise.all([page.waitForNavigation({ timeout: 15_000 }), action()]).catch((err) => {
          throw new Error(`${what} on ${page.url()}: ${err}`);
        });
        assert.ok(page.url().endsWith(`/${to}`), `${what}: ${page.url()}, not ${to}`);
      };
      await follow("next →", () => page.click('a[rel="next"]'), "chat-tls13-page2.html");
      await follow("key →", () => page.keyboard.press("ArrowRight"), "chat-tls13-page3.html");
      assert.equal(await page.$('a[rel="next"]'), null, "the last page has no next");
      await follow("key ←", () => page.keyboard.press("ArrowLeft"), "chat-tls13-page2.html");
      await follow("page 1", () => page.click('a[href="chat-tls13.html"]'), "chat-tls13.html");
    });
  } finally {
    await page.close();
    await Deno.remove(dir, { recursive: true }).catch(() => {});
  }
  // Something was measured: lanes cross labels (long ones, notes, bands) on many pages.
  assert.ok(pagesChecked >= 20, `${pagesChecked} pages`);
  assert.ok(crossingsChecked >= 50, `${crossingsChecked} lane crossings`);
  assert.ok(pngs >= 5, `${pngs} PNGs`);
  console.log(
    `${pagesChecked} pages measured, ${crossingsChecked} lane crossings, ${pngs} PNGs; ` +
      `${browser.version}, launched in ${launchMs.toFixed(0)} ms, all in ${
        ((performance.now() - started) / 1000).toFixed(1)
      } s`,
  );
});
