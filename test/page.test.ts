/**
 * Unit tests of the page's pure parts (public/*.ts that touch no DOM at import): the colours of
 * style.css against WCAG contrast, link and mention tokens, presence wording, retry delays, day
 * labels. What needs a browser is in browser.test.ts.
 */
import { describe, expect, test } from "bun:test";
import { backoffDelay, restartDelay } from "../public/connection.ts";
import { dayLabel, safeLink, shown, tokenize } from "../public/dom.ts";
import { mentions } from "../public/format.ts";
import { didText, listNames, presenceText } from "../public/timeline.ts";
import { slugOf } from "../public/hash.ts";

// ─── Contrast (WCAG 2.x relative luminance) ──────────────────────────────────────────────────

type Rgb = [number, number, number];

function hex(value: string): Rgb {
  const m = /^#([0-9a-f]{6})$/i.exec(value.trim());
  if (!m) throw new Error(`not a #rrggbb colour: ${value}`);
  const n = parseInt(m[1]!, 16);
  return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
}

/** hsl() as CSS computes it; h in degrees, s and l in 0..1. */
function hsl(h: number, s: number, l: number): Rgb {
  const f = (n: number) => {
    const k = (n + h / 30) % 12;
    return l - s * Math.min(l, 1 - l) * Math.max(-1, Math.min(k - 3, 9 - k, 1));
  };
  return [f(0), f(8), f(4)].map((c) => Math.round(c * 255)) as Rgb;
}

function luminance([r, g, b]: Rgb): number {
  const lin = (c: number) => {
    const s = c / 255;
    return s <= 0.04045 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  return 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
}

function contrast(a: Rgb, b: Rgb): number {
  const [hi, lo] = [luminance(a), luminance(b)].sort((x, y) => y - x) as [number, number];
  return (hi + 0.05) / (lo + 0.05);
}

/** The custom properties of style.css: the light ones, and the light ones overridden by the dark block. */
async function themes(): Promise<{ light: Record<string, string>; dark: Record<string, string> }> {
  const css = await Bun.file(new URL("../public/style.css", import.meta.url)).text();
  const vars = (block: string) => Object.fromEntries([...block.matchAll(/--([\w-]+):\s*([^;]+);/g)].map((m) => [m[1]!, m[2]!.trim()]));
  const rootAt = css.indexOf(":root {");
  const light = vars(css.slice(rootAt, css.indexOf("}", rootAt)));
  const darkAt = css.indexOf(":root {", css.indexOf("@media (prefers-color-scheme: dark)"));
  const dark = { ...light, ...vars(css.slice(darkAt, css.indexOf("}", darkAt))) };
  return { light, dark };
}

/** Text colour → the backgrounds it is shown on (style.css). */
const TEXT_ON: Record<string, string[]> = {
  text: ["bg", "panel", "raised", "hover", "mine", "accent-soft", "mention", "mentioned"],
  muted: ["bg", "panel", "raised", "hover", "mine", "accent-soft", "mentioned"],
  link: ["bg", "panel", "raised", "mine", "accent-soft", "mentioned"],
  "accent-text": ["accent"],
  danger: ["bg", "raised", "danger-soft"],
  warn: ["warn-soft", "bg"],
};
/** Input borders → what is inside and around them. */
const BORDER_ON: Record<string, string[]> = { "input-border": ["raised", "panel", "bg"] };
const TEXT_MIN = 4.5;
const BORDER_MIN = 3;

describe("colours (style.css)", () => {
  for (const theme of ["light", "dark"] as const) {
    test(`${theme}: text ≥ ${TEXT_MIN}:1, input borders ≥ ${BORDER_MIN}:1, avatar initials ≥ ${TEXT_MIN}:1 at every hue`, async () => {
      const vars = (await themes())[theme];
      const color = (name: string) => hex(vars[name] ?? `missing --${name}`);
      const low: string[] = [];
      for (const [pairs, min] of [
        [TEXT_ON, TEXT_MIN],
        [BORDER_ON, BORDER_MIN],
      ] as const) {
        for (const [fg, bgs] of Object.entries(pairs)) {
          for (const bg of bgs) {
            const ratio = contrast(color(fg), color(bg));
            if (ratio < min) low.push(`--${fg} on --${bg}: ${ratio.toFixed(2)}`);
          }
        }
      }
      // Avatars: hsl(<hue of the user id> var(--avatar-s) var(--avatar-l)) behind --avatar-text.
      const s = parseFloat(vars["avatar-s"]!) / 100;
      const l = parseFloat(vars["avatar-l"]!) / 100;
      for (let hue = 0; hue < 360; hue++) {
        const ratio = contrast(color("avatar-text"), hsl(hue, s, l));
        if (ratio < TEXT_MIN) low.push(`avatar at hue ${hue}: ${ratio.toFixed(2)}`);
      }
      expect(low).toEqual([]);
    });
  }

  test("the check itself: known ratios", () => {
    expect(contrast(hex("#000000"), hex("#ffffff"))).toBeCloseTo(21, 5);
    expect(contrast(hex("#777777"), hex("#ffffff"))).toBeCloseTo(4.48, 2);
    expect(hsl(60, 1, 0.5)).toEqual([255, 255, 0]);
    expect(hsl(240, 0.5, 0.5)).toEqual([64, 64, 191]);
  });
});

// ─── Links and mentions ──────────────────────────────────────────────────────────────────────

describe("links", () => {
  test("bidi controls are not shown", () => {
    const rlo = "\u202E";
    expect(shown(`a${rlo}b\u2066c\u2069\u200Fd\u061Ce`)).toBe("abcde");
    expect(tokenize(`see https://evil.example/${rlo}gpj.exe`)).toEqual([
      { kind: "text", text: "see " },
      { kind: "link", text: "https://evil.example/gpj.exe", href: "https://evil.example/gpj.exe" },
    ]);
  });

  test("a link shows the host the browser opens: punycode for an IDN, lowercase", () => {
    // "аpple" with a Cyrillic а.
    expect(safeLink("https://\u0430pple.com/login")).toEqual({ text: "https://xn--pple-43d.com/login", href: "https://xn--pple-43d.com/login" });
    expect(safeLink("HTTP://Example.COM/Path?q=1#x")).toEqual({ text: "http://example.com/Path?q=1#x", href: "http://example.com/Path?q=1#x" });
    expect(safeLink("https://example.com")).toEqual({ text: "https://example.com", href: "https://example.com/" });
  });

  test("userinfo is never a link; a backslash does not hide the host", () => {
    expect(safeLink("https://good.com@evil.com/")).toBeNull();
    expect(safeLink("https://good.com:pw@evil.com/")).toBeNull();
    expect(tokenize("go https://good.com@evil.com/ now")).toEqual([{ kind: "text", text: "go https://good.com@evil.com/ now" }]);
    // The URL parser reads `\` as `/` in http(s): the host is evil.com, and that is what shows first.
    expect(safeLink("https://evil.com\\@good.com")?.text).toBe("https://evil.com\\@good.com");
    expect(safeLink("https://evil.com\\@good.com")?.href).toBe("https://evil.com/@good.com");
    expect(safeLink("javascript:alert(1)")).toBeNull();
  });

  test("mentions: @word, and the reader's own name with or without @, as whole words", () => {
    expect(tokenize("hi @dana and @bo.", "Bo")).toEqual([
      { kind: "text", text: "hi " },
      { kind: "mention", text: "@dana", me: false },
      { kind: "text", text: " and " },
      { kind: "mention", text: "@bo", me: true },
      { kind: "text", text: "." },
    ]);
    expect(mentions("ask Dana Smith", "dana smith")).toBe(true);
    expect(mentions("@Zoë, look", "zoë")).toBe(true);
    expect(mentions("bobby and bo_b", "bob")).toBe(false);
    expect(mentions("mail bob@example.com", "example")).toBe(false);
    expect(mentions("a.b?c (x)", "a.b?c")).toBe(true);
    expect(mentions("thanks Jean-Luc!", "jean-luc")).toBe(true);
    expect(mentions("jean-lucas", "jean-luc")).toBe(false);
    // A mention inside a link stays part of the link.
    expect(tokenize("https://x.io/@bo", "bo")).toEqual([{ kind: "link", text: "https://x.io/@bo", href: "https://x.io/@bo" }]);
  });
});

describe("presence wording", () => {
  test("names folded into one line", () => {
    expect(listNames(["alice"])).toBe("alice");
    expect(listNames(["alice", "bob"])).toBe("alice and bob");
    expect(listNames(["alice", "bob", "carol"])).toBe("alice, bob and carol");
    expect(listNames(["alice", "bob", ...Array.from({ length: 12 }, (_, i) => `u${i}`)])).toBe("alice, bob and 12 others");
  });

  test("a folded line keeps every event: who did the same is told together, in order of first appearance", () => {
    const did = (name: string, ...events: ("join" | "leave")[]) => ({ name, events });
    expect(presenceText([did("Carol", "join", "leave"), did("Dave", "join", "leave"), did("Eve", "join", "leave")])).toBe("Carol, Dave and Eve joined and left");
    expect(presenceText([did("Carol", "join"), did("Dave", "leave")])).toBe("Carol joined; Dave left");
    expect(presenceText([did("Ann", "leave", "join"), did("Bo", "join"), did("Cy", "leave", "join")])).toBe("Ann and Cy left and came back; Bo joined");
    expect(didText(["join", "leave", "join"])).toBe("joined, left and came back");
    expect(didText(["leave", "join", "leave"])).toBe("left, came back and left again");
    expect(didText(["join", "leave", "join", "leave"])).toBe("came and went 2 times, and left");
    expect(didText(["join", "join"])).toBe("joined");
  });
});

describe("room names as typed", () => {
  test("become the name they mean; a valid one stays as it is", () => {
    const cases: [string, string][] = [
      ["My Room", "my-room"],
      ["#Design", "design"],
      ["  Café talk! ", "cafe-talk"],
      ["a - b . c", "a-b-c"],
      ["x--y", "x--y"],
      ["_under", "under"],
      ["#dev", "dev"],
      ["!!!", ""],
      ["a".repeat(40), "a".repeat(32)],
    ];
    expect(cases.map(([typed]) => [typed, slugOf(typed)])).toEqual(cases);
  });
});

describe("retry delays", () => {
  test("after a restart notice: about a second, jittered, never growing", () => {
    expect(restartDelay(() => 0)).toBe(500);
    expect(restartDelay(() => 1)).toBe(1500);
    // The usual backoff grows to its cap, with half of each step random.
    expect(backoffDelay(0, () => 0)).toBe(250);
    expect(backoffDelay(20, () => 1)).toBe(30_000);
  });
});

describe("day labels", () => {
  test("Today, Yesterday, then the date", () => {
    const noon = (y: number, m: number, d: number) => new Date(y, m - 1, d, 12).getTime();
    const today = noon(2026, 3, 2);
    expect(dayLabel(noon(2026, 3, 2) - 11 * 3_600_000, today)).toBe("Today");
    expect(dayLabel(noon(2026, 3, 1), today)).toBe("Yesterday");
    expect(dayLabel(noon(2026, 2, 27), today)).toContain("27");
    expect(dayLabel(noon(2025, 2, 27), today)).toContain("2025");
  });
});
