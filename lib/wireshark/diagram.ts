/**
 * A capture's ladder diagram on disk: for each page (ladder_svg.ts), `NAME.svg` and `NAME.html`
 * (then `NAME-page2.svg`, `NAME-page2.html`…), and with a browser `NAME.png` beside each SVG, as
 * Chromium draws it (browser.ts). Everything is readable by everyone (0644), like the capture.
 */

import type { DiagramBrowser } from "./browser.ts";
import {
  type ActorMap,
  buildLadder,
  type CaptureMessage,
  type Ladder,
  type LadderMark,
  markLadder,
  readLabMessages,
  readTlsMessages,
  streamsAnsweredInPlace,
} from "./ladder.ts";
import { pageName, renderHtml, renderSvgPages } from "./ladder_svg.ts";

/** What a diagram is drawn from: the capture's messages and how to place and mark them. */
export interface DiagramInput {
  title: string;
  messages: CaptureMessage[];
  actors: ActorMap;
  marks?: LadderMark[];
}

export interface DiagramPage {
  number: number;
  svg: string;
  html: string;
  /** Only when a browser drew it. */
  png?: string;
  arrows: number;
  width: number;
  height: number;
}

export interface DiagramFiles {
  /** The first page's files. */
  svg: string;
  html: string;
  png?: string;
  arrows: number;
  ladder: Ladder;
  pages: DiagramPage[];
  /** Marks that found no arrow (none when the scenario's notes all landed). */
  missedMarks: LadderMark[];
  input: DiagramInput;
}

/** Reads what a diagram of `capture` is drawn from (tshark with pcap/lab.lua). */
export async function readDiagramInput(
  capture: string,
  options: {
    title: string;
    actors: ActorMap;
    tlsPorts?: readonly number[];
    marks?: readonly LadderMark[];
  },
): Promise<DiagramInput> {
  const read = [
    ...await readLabMessages(capture),
    ...(options.tlsPorts?.length ? await readTlsMessages(capture, options.tlsPorts) : []),
  ];
  // With Trudy's transparent interceptions (the netlab), the connections she answered in place.
  const answered = options.actors.redirects?.length
    ? await streamsAnsweredInPlace(capture)
    : new Set<number>();
  const messages = read.map((m) => answered.has(m.stream) ? { ...m, intercepted: true } : m);
  return {
    title: options.title,
    messages,
    actors: options.actors,
    ...(options.marks ? { marks: [...options.marks] } : {}),
  };
}

/** Files `<base>-pageN.{svg,html,png}` and `<base>.png` left from an earlier drawing. */
async function removeStale(base: string, keepPng: boolean): Promise<void> {
  const slash = base.lastIndexOf("/");
  const dir = slash < 0 ? "." : base.slice(0, slash) || "/";
  const name = base.slice(slash + 1);
  const page = new RegExp(
    `^${name.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}-page\\d+\\.(svg|html|png)$`,
  );
  try {
    for await (const e of Deno.readDir(dir)) {
      if (e.isFile && page.test(e.name)) await Deno.remove(`${dir}/${e.name}`);
    }
  } catch (err) {
    if (!(err instanceof Deno.errors.NotFound)) throw err;
  }
  if (!keepPng) await Deno.remove(`${base}.png`).catch(() => {});
}

async function writePublic(path: string, text: string): Promise<void> {
  await Deno.writeTextFile(path, text, { mode: 0o644 });
  await Deno.chmod(path, 0o644);
}

/**
 * Draws a diagram from its input: places and marks the messages, writes each page's SVG and HTML
 * (and, given a browser, its PNG) as `<base>…`. `capture` is the capture's path as the page links
 * it (relative to the page when they share a folder).
 */
export async function writeLadderFiles(
  input: DiagramInput,
  base: string,
  options: { capture: string; browser?: DiagramBrowser },
): Promise<DiagramFiles> {
  const ladder = buildLadder(input.messages, input.actors);
  const missedMarks = markLadder(ladder, input.marks ?? []);
  const dir = base.slice(0, base.lastIndexOf("/") + 1);
  const name = base.slice(dir.length);
  const shown = dir !== "" && options.capture.startsWith(dir)
    ? options.capture.slice(dir.length)
    : options.capture;
  await removeStale(base, options.browser !== undefined);
  const pages: DiagramPage[] = [];
  for (const page of renderSvgPages(ladder, input.title)) {
    const n = page.view.number;
    const files: DiagramPage = {
      number: n,
      svg: `${dir}${pageName(name, n, "svg")}`,
      html: `${dir}${pageName(name, n, "html")}`,
      arrows: page.view.arrows.length,
      width: page.width,
      height: page.height,
    };
    await writePublic(files.svg, page.svg);
    await writePublic(
      files.html,
      renderHtml(ladder, page, {
        title: input.title,
        capture: shown,
        name,
        png: options.browser !== undefined,
      }),
    );
    if (options.browser) {
      files.png = `${dir}${pageName(name, n, "png")}`;
      await options.browser.png(files.svg, files.png, page.width, page.height);
    }
    pages.push(files);
  }
  const first = pages[0]!;
  return {
    svg: first.svg,
    html: first.html,
    ...(first.png ? { png: first.png } : {}),
    arrows: ladder.arrows.length,
    ladder,
    pages,
    missedMarks,
    input,
  };
}

/**
 * Draws a capture: reads its lab messages and TLS records, writes `<base>.svg` and `<base>.html`
 * (and further pages, and PNGs with a browser; mode 0644).
 */
export async function writeDiagram(
  capture: string,
  base: string,
  options: {
    title: string;
    actors: ActorMap;
    tlsPorts?: readonly number[];
    marks?: readonly LadderMark[];
    browser?: DiagramBrowser;
  },
): Promise<DiagramFiles> {
  const input = await readDiagramInput(capture, options);
  return await writeLadderFiles(input, base, {
    capture,
    ...(options.browser ? { browser: options.browser } : {}),
  });
}
