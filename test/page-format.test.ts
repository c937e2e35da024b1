/**
 * The message format's grammar (public/format.ts), rule by rule, as trees: fences, quotes,
 * paragraphs; code spans, links (http(s) and bare www. hosts), strong, em, strike, mentions;
 * nesting, what stays text, and that parsing stays linear on hostile input. Chromium draws the
 * same trees in test/page-reading.test.ts (and shows that no text becomes HTML).
 */
import { describe, expect, test } from "bun:test";
import { inline, mentions, parse, type Inline } from "../public/format.ts";

const text = (s: string): Inline => ({ t: "text", s });
const p = (...lines: Inline[][]) => ({ t: "p" as const, lines });

describe("blocks", () => {
  test("paragraph lines stay together, line breaks kept; quotes group; a fence takes its lines as written", () => {
    expect(parse("one\ntwo")).toEqual([p([text("one")], [text("two")])]);
    expect(parse("> a\n>b\nc")).toEqual([{ t: "quote", lines: [[text("a")], [text("b")]] }, p([text("c")])]);
    expect(parse("see:\n```ts\nconst a = **b**;\n  <i>x</i>\n```\ndone")).toEqual([
      p([text("see:")]),
      { t: "code", s: "const a = **b**;\n  <i>x</i>", lang: "ts" },
      p([text("done")]),
    ]);
  });

  test("an unclosed fence is code to the end; a shorter closer does not close; an empty fence is empty code", () => {
    expect(parse("```\nfn()\nstill code")).toEqual([{ t: "code", s: "fn()\nstill code", lang: "" }]);
    expect(parse("````\na\n```\nb\n````")).toEqual([{ t: "code", s: "a\n```\nb", lang: "" }]);
    expect(parse("```\n```")).toEqual([{ t: "code", s: "", lang: "" }]);
  });

  test("backticks on one line are a code span, not a fence; a quote inside a fence is code", () => {
    expect(parse("```let x = 1```")).toEqual([p([{ t: "code", s: "let x = 1" }])]);
    expect(parse("```\n> not a quote\n```")).toEqual([{ t: "code", s: "> not a quote", lang: "" }]);
  });
});

describe("inline", () => {
  test("strong, em (both markers), strike, code", () => {
    expect(inline("a **b** *c* _d_ ~~e~~ `f`")).toEqual([
      text("a "),
      { t: "strong", c: [text("b")] },
      text(" "),
      { t: "em", c: [text("c")] },
      text(" "),
      { t: "em", c: [text("d")] },
      text(" "),
      { t: "del", c: [text("e")] },
      text(" "),
      { t: "code", s: "f" },
    ]);
  });

  test("nesting: markers of other kinds inside; an opener pairs with the nearest closer of its kind", () => {
    expect(inline("**bold *and em* here**")).toEqual([{ t: "strong", c: [text("bold "), { t: "em", c: [text("and em")] }, text(" here")] }]);
    expect(inline("*a **b** c*")).toEqual([{ t: "em", c: [text("a "), { t: "strong", c: [text("b")] }, text(" c")] }]);
    expect(inline("**a *b** c*")).toEqual([{ t: "strong", c: [text("a *b")] }, text(" c*")]);
    expect(inline("~~**x**~~")).toEqual([{ t: "del", c: [{ t: "strong", c: [text("x")] }] }]);
  });

  test("what stays text: unpaired, spaced, inside words, runs of three, __, across lines", () => {
    for (const s of ["2*3*4", "snake_case_name", "a * b * c", "***x***", "__init__", "**open", "close**", "~x~", "* not a list", "**"]) {
      expect({ s, tree: inline(s) }).toEqual({ s, tree: [text(s)] });
    }
    expect(parse("**a\nb**")).toEqual([p([text("**a")], [text("b**")])]);
  });

  test("code spans: as written, HTML and markers included; N backticks close only on N; unmatched runs are text", () => {
    expect(inline("`<script>alert(1)</script>`")).toEqual([{ t: "code", s: "<script>alert(1)</script>" }]);
    expect(inline("`**not bold** https://x.io @bo`", "bo")).toEqual([{ t: "code", s: "**not bold** https://x.io @bo" }]);
    expect(inline("``a ` b``")).toEqual([{ t: "code", s: "a ` b" }]);
    expect(inline("`open only")).toEqual([text("`open only")]);
    expect(inline("*`code`*")).toEqual([{ t: "em", c: [{ t: "code", s: "code" }] }]);
  });

  test("links: http(s) and bare www. hosts (as https), whole: markers inside a URL do not pair", () => {
    expect(inline("see www.example.com/a_b_c.")).toEqual([text("see "), { t: "link", s: "www.example.com/a_b_c", href: "https://www.example.com/a_b_c" }, text(".")]);
    expect(inline("https://en.wikipedia.org/wiki/A_(b)_c and _em_")).toEqual([
      { t: "link", s: "https://en.wikipedia.org/wiki/A_(b)_c", href: "https://en.wikipedia.org/wiki/A_(b)_c" },
      text(" and "),
      { t: "em", c: [text("em")] },
    ]);
    expect(inline("**www.example.com**")).toEqual([{ t: "strong", c: [{ t: "link", s: "www.example.com", href: "https://www.example.com/" }] }]);
    // Not a host of its own: inside a word, after @ or a dot, or with no dot after www.
    for (const s of ["xwww.example.com", "me@www.example.com", "a.www.example.com", "www.localhost", "javascript:alert(1)"]) {
      expect({ s, links: inline(s).filter((n) => n.t === "link") }).toEqual({ s, links: [] });
    }
    // A look-alike host is shown as the browser will open it; userinfo is never a link.
    expect(inline("www.\u0430pple.com")).toEqual([{ t: "link", s: "www.xn--pple-43d.com", href: "https://www.xn--pple-43d.com/" }]);
    expect(inline("https://good.example@evil.example/")).toEqual([text("https://good.example@evil.example/")]);
  });

  test("mentions in text, not in code; bidi controls dropped everywhere", () => {
    expect(inline("hi @bo, *bo*", "bo")).toEqual([text("hi "), { t: "mention", s: "@bo", me: true }, text(", "), { t: "em", c: [{ t: "mention", s: "bo", me: true }] }]);
    expect(mentions("`@bo` in code", "bo")).toBe(false);
    expect(mentions("```\nbo\n```", "bo")).toBe(false);
    expect(mentions("> bo, see this", "bo")).toBe(true);
    expect(parse("`a\u202Eb`")).toEqual([p([{ t: "code", s: "ab" }])]);
  });

  test("hostile input stays fast: nesting is bounded, long lines are linear", () => {
    expect(inline("**a *b _c ~~d~~ c_ b* a**")).toEqual([
      { t: "strong", c: [text("a "), { t: "em", c: [text("b "), { t: "em", c: [text("c "), { t: "del", c: [text("d")] }, text(" c")] }, text(" b")] }, text(" a")] },
    ]);
    const started = performance.now();
    for (const s of ["*a ".repeat(30_000), "xwww.a.".repeat(15_000), "`".repeat(50_000), "` a ``".repeat(10_000), "**x".repeat(30_000), "_a_".repeat(30_000), "**a *b _c ~~d ".repeat(5_000)]) parse(s);
    expect(performance.now() - started).toBeLessThan(2_000);
  });
});
