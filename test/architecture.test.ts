/**
 * The module map holds: imports flow one way (protocol → core → engine seams → engines → the
 * hub's parts → the hub → the doors → server.ts), engines never import each other or anything
 * above them, the page imports nothing of the server's but src/protocol/wire.ts, and every module
 * says its job in its first comment. Reads the source files; runs none of them.
 */
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync, statSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const ROOT = join(import.meta.dir, "..");

/**
 * Each module's layer, lowest first. A module may import from its own layer or a lower one,
 * never a higher one; a module missing here fails the test, so a new file takes its place here.
 */
const LAYERS: [layer: string, modules: RegExp][] = [
  ["wire", /^src\/protocol\/wire\.ts$/],
  ["rules", /^src\/protocol\/rules\.ts$/],
  ["core", /^src\/(config|metrics|context|assets)\.ts$|^src\/core\/[\w-]+\.ts$/],
  ["engine seams", /^src\/engine\.ts$/],
  ["engines", /^src\/sqlite\.ts$|^src\/(sqlite|redis)\/[\w-]+\.ts$/],
  ["hub's parts", /^src\/(auth|authority|batcher|changes|connection|conns|directory|fanout|membership|moderation|rate|roomlog|users|bots|webhooks)\.ts$/],
  ["hub", /^src\/hub\.ts$/],
  ["doors", /^src\/(ws|tcp|http|api)\.ts$/],
  ["entry", /^server\.ts$/],
];

function filesUnder(dir: string, ext: RegExp): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(ROOT, dir))) {
    const path = join(dir, name);
    if (statSync(join(ROOT, path)).isDirectory()) out.push(...filesUnder(path, ext));
    else if (ext.test(name)) out.push(path);
  }
  return out;
}

const sources = ["server.ts", ...filesUnder("src", /\.ts$/).filter((f) => !f.endsWith(".d.ts"))];

/** The repository-relative files a module imports (type-only imports included), and the packages. */
function importsOf(file: string): { local: string[]; packages: string[] } {
  const text = readFileSync(join(ROOT, file), "utf8");
  const specifiers = [...text.matchAll(/^\s*(?:import|export)\s[^;]*?from\s+"([^"]+)"/gm)].map((m) => m[1]!);
  const local = specifiers.filter((s) => s.startsWith(".")).map((s) => relative(ROOT, resolve(ROOT, dirname(file), s)));
  return { local, packages: specifiers.filter((s) => !s.startsWith(".")) };
}

const layerOf = (file: string) => LAYERS.findIndex(([, pattern]) => pattern.test(file));

describe("the module map", () => {
  test("every module has a layer", () => {
    expect(sources.filter((f) => layerOf(f) === -1)).toEqual([]);
  });

  test("imports never run up a layer", () => {
    const upward: string[] = [];
    for (const file of sources) {
      for (const target of importsOf(file).local) {
        if (target.endsWith(".lua")) continue;
        if (layerOf(target) > layerOf(file)) upward.push(`${file} → ${target}`);
      }
    }
    expect(upward).toEqual([]);
  });

  test("wire.ts imports nothing; the engines import neither each other nor the hub's parts", () => {
    expect(importsOf("src/protocol/wire.ts")).toEqual({ local: [], packages: [] });
    const crossed: string[] = [];
    for (const file of sources.filter((f) => LAYERS[layerOf(f)]![0] === "engines")) {
      const family = file.startsWith("src/redis/") ? "src/redis/" : "src/sqlite";
      for (const target of importsOf(file).local) {
        if (layerOf(target) === layerOf(file) && !target.startsWith(family) && target !== family) crossed.push(`${file} → ${target}`);
      }
    }
    expect(crossed).toEqual([]);
  });

  test("the doors do not import each other, and only server.ts picks an engine", () => {
    const doors = sources.filter((f) => LAYERS[layerOf(f)]![0] === "doors");
    const between = doors.flatMap((file) => importsOf(file).local.filter((t) => doors.includes(t)).map((t) => `${file} → ${t}`));
    expect(between).toEqual([]);
    const engines = sources.filter((f) => LAYERS[layerOf(f)]![0] === "engines");
    const pickers = sources.filter((f) => !engines.includes(f) && importsOf(f).local.some((t) => engines.includes(t)));
    expect(pickers).toEqual(["server.ts"]);
  });

  test("no import cycles", () => {
    const graph = new Map(sources.map((f) => [f, importsOf(f).local.filter((t) => sources.includes(t))]));
    const cycles: string[] = [];
    const state = new Map<string, "visiting" | "done">();
    const visit = (file: string, path: string[]) => {
      if (state.get(file) === "done") return;
      if (state.get(file) === "visiting") return void cycles.push([...path.slice(path.indexOf(file)), file].join(" → "));
      state.set(file, "visiting");
      for (const next of graph.get(file) ?? []) visit(next, [...path, file]);
      state.set(file, "done");
    };
    for (const file of sources) visit(file, []);
    expect(cycles).toEqual([]);
  });

  test("the page imports nothing of the server's but src/protocol/wire.ts", () => {
    const page = filesUnder("public", /\.ts$/);
    expect(page.length).toBeGreaterThan(0);
    const reached = page.flatMap((file) =>
      importsOf(file)
        .local.filter((t) => !t.startsWith("public/"))
        .map((t) => `${file} → ${t}`),
    );
    expect(reached.filter((r) => !r.endsWith("→ src/protocol/wire.ts"))).toEqual([]);
  });

  test("every module says its job in its first comment", () => {
    const silent = [...sources, ...filesUnder("public", /\.ts$/)].filter((file) => !/^\/\*\*?\s*\n?\s*\S/.test(readFileSync(join(ROOT, file), "utf8")));
    const lua = filesUnder("src/redis/lua", /\.lua$/).filter((file) => !readFileSync(join(ROOT, file), "utf8").startsWith("-- "));
    expect([...silent, ...lua]).toEqual([]);
  });
});
