/**
 * The ladder drawn for a projector: SVG pages of at most ARROWS_PER_PAGE arrows, and an HTML page
 * for each with links to the others and the list of its messages.
 *
 * Text is 15 to 20 px at the SVG's own size, and a diagram of up to six lanes is at most about
 * 1200 px wide, so that in a 1280 × 720 projector view (PROJECTOR) the HTML page shows it unscaled.
 * Each arrow has a row of its own: its label above it on an opaque box (the lane lines pass behind),
 * wrapped to at most MAX_LABEL_LINES lines, clear of every arrowhead. An arrow with a note (what
 * Trudy changed) is red and thick, with the note in a red box in a row under it; a band opens each
 * section of an attack (seed mode, the default). Arrowheads are drawn as paths, not markers, so that
 * the browser test can measure them.
 *
 * Widths are estimated with DejaVu Sans' advance widths, the font named first (and, like Verdana,
 * the widest common sans-serif): where another font is used the boxes are a little too wide, never
 * too narrow.
 */

import { type Arrow, arrowText, isError, type Ladder } from "./ladder.ts";

/** The projector view the diagrams are made for (CSS pixels). */
export const PROJECTOR = { width: 1280, height: 720 } as const;
/** No text smaller than this in the projector view. */
export const MIN_TEXT_PX = 14;
/** Arrows per page, at most. */
export const ARROWS_PER_PAGE = 25;
/** Lines of an arrow's label, at most (the full text is in its tooltip and the table). */
export const MAX_LABEL_LINES = 4;

const FONT_FAMILY = "DejaVu Sans, Verdana, Bitstream Vera Sans, sans-serif";
const SIZE = { title: 20, sub: 15, actor: 17, label: 16, time: 15, note: 16, band: 17 } as const;
const LINE = { title: 26, sub: 20, actor: 22, label: 20, note: 21, band: 22 } as const;
/** Widest diagram drawn unscaled in the projector view (its page has margins). */
const MAX_WIDTH = 1200;
/** The time column. */
const LEFT = 78;
const RIGHT = 14;
const MIN_LANE = 190;
const MAX_LANE = 300;
/** Arrowhead: length and half height. */
const HEAD = { length: 13, half: 6 } as const;

const COLOURS = {
  lab: "#1a5fb4",
  tls: "#26734d",
  data: "#5f5f5f",
  error: "#b3261e",
  text: "#222222",
  muted: "#555555",
  lane: "#8a8fa3",
} as const;

const SECTION_STYLE: Record<string, { fill: string; stroke: string; text: string }> = {
  seed: { fill: "#fff1c2", stroke: "#c99a06", text: "#5c4500" },
  default: { fill: "#dff3e4", stroke: "#2e7d32", text: "#1b4d20" },
};
const OTHER_SECTION = { fill: "#eef2f7", stroke: "#445566", text: "#222222" };

// DejaVu Sans advance widths of ASCII 32-126, in hundredths of an em (measured in Chromium).
const WIDTHS = {
  normal: "32,40,46,84,64,95,78,27,39,39,50,84,32,36,32,34,64,64,64,64,64,64,64,64,64,64,34,34," +
    "84,84,84,53,100,68,69,70,77,63,58,77,75,29,29,66,56,86,75,79,60,79,69,63,61,73,68,99,69,61," +
    "69,39,34,39,84,50,50,61,63,55,63,62,35,63,63,28,28,58,28,97,63,61,63,63,41,52,39,63,59,82," +
    "59,59,52,64,34,64,84",
  bold: "35,46,52,84,70,100,87,31,46,46,52,84,38,42,38,37,70,70,70,70,70,70,70,70,70,70,40,40,84," +
    "84,84,58,100,77,76,73,83,68,68,82,84,37,37,77,64,100,84,85,73,85,77,72,68,81,77,110,77,72,73," +
    "46,37,46,84,50,50,67,72,59,72,68,44,72,71,34,34,67,34,104,71,69,72,72,49,60,48,71,65,92,65," +
    "65,58,71,37,71,84",
};
const ADVANCE = {
  normal: WIDTHS.normal.split(",").map(Number),
  bold: WIDTHS.bold.split(",").map(Number),
};

/** The estimated width of `text` in px (any character outside ASCII counts one em). */
export function textWidth(text: string, size: number, bold = false): number {
  const table = bold ? ADVANCE.bold : ADVANCE.normal;
  let hundredths = 0;
  for (const ch of text) {
    const c = ch.codePointAt(0)!;
    hundredths += c >= 32 && c <= 126 ? table[c - 32]! : 100;
  }
  return (hundredths * size) / 100;
}

/**
 * `text` in lines no wider than `max` px, broken at spaces (a word wider than a line is broken
 * anywhere); beyond `maxLines` the last line ends in `…`.
 */
export function wrapText(
  text: string,
  max: number,
  size: number,
  options: { bold?: boolean; maxLines?: number } = {},
): string[] {
  const bold = options.bold ?? false;
  const fits = (s: string) => textWidth(s, size, bold) <= max;
  const lines: string[] = [];
  let line = "";
  for (const word of text.split(" ")) {
    const next = line === "" ? word : `${line} ${word}`;
    if (fits(next)) {
      line = next;
      continue;
    }
    if (line !== "") lines.push(line);
    line = word;
    while (!fits(line)) {
      let cut = line.length - 1;
      while (cut > 1 && !fits(line.slice(0, cut))) cut--;
      lines.push(line.slice(0, cut));
      line = line.slice(cut);
    }
  }
  if (line !== "" || lines.length === 0) lines.push(line);
  const maxLines = options.maxLines ?? Infinity;
  if (lines.length <= maxLines) return lines;
  const kept = lines.slice(0, maxLines);
  let last = `${kept[maxLines - 1]!}…`;
  while (!fits(last) && last.length > 1) last = `${last.slice(0, -2)}…`;
  kept[maxLines - 1] = last;
  return kept;
}

function xml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => `&#${c.charCodeAt(0)};`);
}

function colour(a: Arrow): string {
  if (a.note !== undefined) return COLOURS.error;
  if (a.protocol !== "TLS") return isError(a.label) ? COLOURS.error : COLOURS.lab;
  if (/Alert/.test(a.label)) return COLOURS.error;
  return a.label.startsWith("Application Data") ? COLOURS.data : COLOURS.tls;
}

/** One page of a ladder: which arrows, and the section it starts in. */
export interface PageView {
  /** 1-based. */
  number: number;
  of: number;
  /** Index in `ladder.arrows` of the page's first arrow. */
  first: number;
  arrows: Arrow[];
}

/**
 * The ladder cut into pages of at most `perPage` arrows, as even as possible; a page ends where a
 * section (an attack's half) ends when that is not too early.
 */
export function paginate(ladder: Ladder, perPage = ARROWS_PER_PAGE): PageView[] {
  const arrows = ladder.arrows;
  const n = arrows.length;
  const starts = [0];
  let start = 0;
  while (n - start > perPage) {
    const remaining = n - start;
    const target = Math.ceil(remaining / Math.ceil(remaining / perPage));
    const goal = start + target;
    let boundary: number | undefined;
    for (let i = start + Math.ceil(target / 2); i <= Math.min(start + perPage, n - 1); i++) {
      const opens = arrows[i]!.section !== arrows[i - 1]!.section;
      if (opens && (boundary === undefined || Math.abs(i - goal) < Math.abs(boundary - goal))) {
        boundary = i;
      }
    }
    const end = boundary ?? goal;
    starts.push(end);
    start = end;
  }
  return starts.map((first, k) => ({
    number: k + 1,
    of: starts.length,
    first,
    arrows: arrows.slice(first, starts[k + 1] ?? n),
  }));
}

export interface SvgPage {
  svg: string;
  width: number;
  height: number;
  view: PageView;
}

/** Lane width and diagram width for `lanes` lanes. */
function geometry(lanes: number): { lane: number; width: number } {
  const n = Math.max(lanes, 2);
  const lane = Math.max(MIN_LANE, Math.min(MAX_LANE, Math.floor((MAX_WIDTH - LEFT - RIGHT) / n)));
  return { lane, width: LEFT + n * lane + RIGHT };
}

/** A `<text>` of several lines, each a `<tspan>`, centred on `x` when `anchor` is middle. */
function textLines(
  lines: readonly string[],
  x: number,
  firstBaseline: number,
  lineHeight: number,
  attrs: string,
): string {
  const spans = lines.map((l, i) =>
    `<tspan x="${x}" y="${firstBaseline + i * lineHeight}">${xml(l)}</tspan>`
  ).join("");
  return `<text ${attrs}>${spans}</text>`;
}

/** One page of the ladder as a standalone SVG (all of it when `view` is not given). */
export function renderSvg(ladder: Ladder, title: string, view?: PageView): SvgPage {
  const page: PageView = view ??
    { number: 1, of: 1, first: 0, arrows: ladder.arrows };
  const { lane, width } = geometry(ladder.actors.length);
  const x = (name: string) => LEFT + ladder.actors.indexOf(name) * lane + lane / 2;
  const body: string[] = [];
  let y = 8;

  // Title, and which page this is.
  const titleLines = wrapText(title, width - 24, SIZE.title, { bold: true });
  body.push(textLines(
    titleLines,
    12,
    y + 20,
    LINE.title,
    `class="title" font-size="${SIZE.title}" font-weight="bold" fill="${COLOURS.text}"`,
  ));
  y += titleLines.length * LINE.title + 4;
  const total = ladder.arrows.length;
  const sub = page.of > 1
    ? `page ${page.number} of ${page.of}: arrows ${page.first + 1}–${
      page.first + page.arrows.length
    } of ${total}`
    : `${total} arrow${total === 1 ? "" : "s"}, in capture order`;
  const subLines = wrapText(sub, width - 24, SIZE.sub);
  body.push(textLines(
    subLines,
    12,
    y + 15,
    LINE.sub,
    `class="subtitle" font-size="${SIZE.sub}" fill="${COLOURS.muted}"`,
  ));
  y += subLines.length * LINE.sub + 10;

  // Actors' boxes.
  const actorLines = ladder.actors.map((a) =>
    wrapText(a, lane - 30, SIZE.actor, { bold: true, maxLines: 2 })
  );
  const boxHeight = Math.max(1, ...actorLines.map((l) => l.length)) * LINE.actor + 14;
  const boxTop = y;
  const header: string[] = [
    `<text class="time-heading" x="8" y="${boxTop + boxHeight / 2 + 5}" font-size="${SIZE.time}" ` +
    `fill="${COLOURS.muted}">time (s)</text>`,
  ];
  ladder.actors.forEach((a, i) => {
    const cx = x(a);
    const lines = actorLines[i]!;
    header.push(
      `<g class="actor" data-actor="${xml(a)}"><rect x="${cx - (lane - 16) / 2}" y="${boxTop}" ` +
        `width="${lane - 16}" height="${boxHeight}" rx="5" fill="#eef2f7" stroke="#445566"/>` +
        textLines(
          lines,
          cx,
          boxTop + (boxHeight - lines.length * LINE.actor) / 2 + 16,
          LINE.actor,
          `text-anchor="middle" font-size="${SIZE.actor}" font-weight="bold" fill="${COLOURS.text}"`,
        ) + `</g>`,
    );
  });
  y = boxTop + boxHeight + 6;
  const lanesTop = y;

  // Rows: bands, arrows, notes.
  const rows: string[] = [];
  const band = (key: string, text: string) => {
    const style = SECTION_STYLE[key] ?? OTHER_SECTION;
    const lines = wrapText(text, width - 40, SIZE.band, { bold: true });
    const h = lines.length * LINE.band + 14;
    rows.push(
      `<g class="band" data-section="${xml(key)}"><rect x="0" y="${y + 6}" width="${width}" ` +
        `height="${h}" fill="${style.fill}" stroke="${style.stroke}" stroke-width="2"/>` +
        textLines(
          lines,
          width / 2,
          y + 6 + 7 + 16,
          LINE.band,
          `text-anchor="middle" font-size="${SIZE.band}" font-weight="bold" fill="${style.text}"`,
        ) + `</g>`,
    );
    y += h + 12;
  };
  const sectionTitle = (key: string) => ladder.sections.find((s) => s.key === key)?.title ?? key;
  let previous = page.first > 0 ? ladder.arrows[page.first - 1]!.section : undefined;
  page.arrows.forEach((a, i) => {
    if (a.section !== undefined && (a.section !== previous || i === 0)) {
      band(a.section, `${sectionTitle(a.section)}${a.section === previous ? " (continued)" : ""}`);
    }
    previous = a.section;
    const x1 = x(a.from);
    const x2 = x(a.to);
    const c = colour(a);
    const text = arrowText(a);
    const span = Math.abs(x2 - x1);
    const room = Math.min(width - LEFT - RIGHT - 12, Math.max(span - 24, lane * 1.5));
    const lines = wrapText(text, room, SIZE.label, { maxLines: MAX_LABEL_LINES });
    const w = Math.max(...lines.map((l) => textWidth(l, SIZE.label)));
    const boxW = w + 12;
    const boxX = Math.max(LEFT + 2, Math.min(width - RIGHT - boxW, (x1 + x2) / 2 - boxW / 2));
    const boxTop = y + 4;
    const boxH = lines.length * LINE.label + 6;
    const arrowY = boxTop + boxH + 10;
    const dir = x2 >= x1 ? 1 : -1;
    const shaftEnd = x2 - dir * HEAD.length;
    const number = page.first + i + 1;
    rows.push(
      `<g class="arrow" data-n="${number}" data-frame="${a.frame}"${
        a.note !== undefined ? ` data-note="true"` : ""
      }><title>${
        xml(`${number}. frame ${a.frame}, ${a.time.toFixed(3)} s: ${a.from} → ${a.to}: ${text}`)
      }</title>` +
        `<text class="time" x="8" y="${arrowY + 5}" font-size="${SIZE.time}" ` +
        `fill="${COLOURS.muted}">${a.time.toFixed(3)}</text>` +
        `<line class="shaft" x1="${x1}" y1="${arrowY}" x2="${shaftEnd}" y2="${arrowY}" ` +
        `stroke="${c}" stroke-width="${a.note !== undefined ? 3.5 : 2}"/>` +
        `<path class="head" d="M${x2},${arrowY}L${shaftEnd},${arrowY - HEAD.half}L${shaftEnd},${
          arrowY + HEAD.half
        }z" fill="${c}"/>` +
        `<g class="label"><rect x="${boxX}" y="${boxTop}" width="${boxW}" height="${boxH}" ` +
        `fill="#ffffff"/>` +
        textLines(
          lines,
          boxX + boxW / 2,
          boxTop + 3 + 15,
          LINE.label,
          `text-anchor="middle" font-size="${SIZE.label}" fill="${c}"`,
        ) + `</g></g>`,
    );
    y = arrowY + 10;
    if (a.note !== undefined) {
      const noteRoom = Math.min(width - LEFT - RIGHT - 24, Math.max(lane * 2, 440));
      const noteLines = wrapText(a.note, noteRoom, SIZE.note, { bold: true });
      const nw = Math.max(...noteLines.map((l) => textWidth(l, SIZE.note, true))) + 20;
      const nx = Math.max(LEFT + 2, Math.min(width - RIGHT - nw, (x1 + x2) / 2 - nw / 2));
      const nh = noteLines.length * LINE.note + 12;
      rows.push(
        `<g class="note" data-n="${number}"><rect x="${nx}" y="${y + 2}" width="${nw}" ` +
          `height="${nh}" rx="4" fill="#fdecea" stroke="${COLOURS.error}" stroke-width="2"/>` +
          textLines(
            noteLines,
            nx + nw / 2,
            y + 2 + 6 + 16,
            LINE.note,
            `text-anchor="middle" font-size="${SIZE.note}" font-weight="bold" fill="#a1140f"`,
          ) + `</g>`,
      );
      y += nh + 10;
    }
  });
  const height = Math.ceil(y + 12);
  const lanes = ladder.actors.map((a) =>
    `<line class="lane" data-actor="${xml(a)}" x1="${x(a)}" y1="${lanesTop}" x2="${x(a)}" ` +
    `y2="${height - 6}" stroke="${COLOURS.lane}" stroke-width="1.5" stroke-dasharray="5 5"/>`
  );
  const svgTitle = page.of > 1 ? `${title} (page ${page.number} of ${page.of})` : title;
  const svg = [
    `<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="${width}" height="${height}" ` +
    `viewBox="0 0 ${width} ${height}" font-family="${FONT_FAMILY}" font-size="${SIZE.label}">`,
    `<title>${xml(svgTitle)}</title>`,
    `<rect class="background" width="100%" height="100%" fill="#ffffff"/>`,
    // Lane lines first: everything else is drawn over them.
    `<g class="lanes">`,
    ...lanes,
    `</g>`,
    ...body,
    ...header,
    ...rows,
    "</svg>",
  ].join("\n") + "\n";
  return { svg, width, height, view: page };
}

/** The ladder's pages as SVGs. */
export function renderSvgPages(
  ladder: Ladder,
  title: string,
  perPage = ARROWS_PER_PAGE,
): SvgPage[] {
  return paginate(ladder, perPage).map((view) => renderSvg(ladder, title, view));
}

/** File name of page `n` (1-based) of a diagram called `name`: `name.html`, `name-page2.html`. */
export function pageName(name: string, n: number, ext: "svg" | "html" | "png"): string {
  return `${name}${n === 1 ? "" : `-page${n}`}.${ext}`;
}

/** Whether the ladder draws TLS records (only then does the capture decrypt anything itself). */
export function hasTls(ladder: Ladder): boolean {
  return ladder.arrows.some((a) => a.protocol === "TLS");
}

/** The page links: every page by number, previous and next. */
function pageNav(name: string, page: PageView): string {
  if (page.of === 1) return "";
  const links = Array.from({ length: page.of }, (_, k) => k + 1).map((n) =>
    n === page.number
      ? `<strong aria-current="page">${n}</strong>`
      : `<a href="${xml(encodeURI(pageName(name, n, "html")))}">${n}</a>`
  );
  const prev = page.number > 1
    ? `<a rel="prev" href="${
      xml(encodeURI(pageName(name, page.number - 1, "html")))
    }">← previous</a>`
    : "";
  const next = page.number < page.of
    ? `<a rel="next" href="${xml(encodeURI(pageName(name, page.number + 1, "html")))}">next →</a>`
    : "";
  return `<nav class="pages">Pages: ${links.join(" ")} ${prev} ${next}</nav>`;
}

/**
 * The HTML page for one SVG page: title, page links (← and → keys too), what the capture is and
 * how to open it, the diagram, and its messages as a table.
 */
export function renderHtml(
  ladder: Ladder,
  page: SvgPage,
  options: { title: string; capture: string; name: string; png?: boolean },
): string {
  const view = page.view;
  const rows = view.arrows.map((a, i) =>
    `<tr${a.note !== undefined ? ` class="marked"` : ""}><td>${view.first + i + 1}</td><td>${
      a.time.toFixed(3)
    }</td><td>${a.frame}</td><td>${xml(a.from)} → ${xml(a.to)}</td><td>${xml(a.protocol)}</td><td>${
      xml(arrowText(a))
    }${a.note !== undefined ? `<br><span class="note">${xml(a.note)}</span>` : ""}</td></tr>`
  ).join("\n");
  const tls = hasTls(ladder);
  const nav = pageNav(options.name, view);
  const pageTitle = view.of > 1
    ? `${options.title} (page ${view.number} of ${view.of})`
    : options.title;
  const legend = [
    `<span style="color:${COLOURS.lab}">blue</span>: a lab message`,
    ...(tls
      ? [
        `<span style="color:${COLOURS.tls}">green</span>: a TLS handshake record`,
        `<span style="color:${COLOURS.data}">grey</span>: TLS application data`,
      ]
      : []),
    `<span style="color:${COLOURS.error}">red</span>: an error${tls ? " or alert" : ""}${
      ladder.arrows.some((a) => a.note !== undefined) ? ", or what Trudy changed (red note)" : ""
    }`,
  ].join(" · ");
  const open = tls
    ? "open it in Wireshark: TLS decrypts itself (the key log is inside the capture), and " +
      "<code>pcap/lab.lua</code> names the chat's messages"
    : "open it in Wireshark with <code>pcap/lab.lua</code>, which names the lab's messages by step";
  return `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>${xml(pageTitle)}</title>
<style>
body { font-family: ${FONT_FAMILY}; font-size: 18px; margin: 24px; color: #222; }
h1 { font-size: 24px; margin: 0 0 0.4em; }
p { margin: 0.4em 0; }
nav.pages { margin: 0.6em 0; }
nav.pages a, nav.pages strong { display: inline-block; padding: 0.1em 0.5em; margin: 0 0.15em 0.2em 0;
  border: 1px solid #99a; border-radius: 4px; text-decoration: none; }
nav.pages strong { background: #eef2f7; }
figure { margin: 0.6em 0; }
figure svg { display: block; max-width: 100%; height: auto; }
table { border-collapse: collapse; margin-top: 1em; font-size: 16px; }
td, th { border: 1px solid #ccd; padding: 0.2em 0.6em; text-align: left; vertical-align: top; }
th { background: #eef2f7; }
.note { color: #a1140f; font-weight: bold; }
</style>
</head>
<body>
<h1>${xml(pageTitle)}</h1>
${nav}
<p>Capture: <a href="${xml(encodeURI(options.capture))}"><code>${
    xml(options.capture)
  }</code></a> (${open}). One arrow per message, in capture order; time in seconds at the left.${
    options.png
      ? ` This page as a picture: <a href="${
        xml(encodeURI(pageName(options.name, view.number, "png")))
      }">${xml(pageName(options.name, view.number, "png"))}</a>.`
      : ""
  }</p>
<p class="legend">${legend}</p>
<figure>
${page.svg}</figure>
${nav}
<table>
<tr><th>#</th><th>time (s)</th><th>frame</th><th>between</th><th>protocol</th><th>message</th></tr>
${rows}
</table>
<script>
document.addEventListener("keydown", (e) => {
  const rel = { ArrowLeft: "prev", ArrowRight: "next" }[e.key];
  const link = rel && document.querySelector('a[rel="' + rel + '"]');
  if (link) location.href = link.href;
});
</script>
</body>
</html>
`;
}
