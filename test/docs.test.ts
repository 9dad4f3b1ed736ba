// The docs against the code:
//   (a) docs/algorithm.md has one "### N. title" section per stage of core/pipeline.ts, in order;
//   (b) a real `--trace` run of the compiled binary prints the same stages' markers, in the same
//       order, each from the process that core/pipeline.ts (and so docs/algorithm.md) says runs it;
//   (c) docs/config.md's config reference names exactly the keys core/stages/config.ts accepts, and its
//       full example config passes parseConfig (which rejects unknown keys);
//   (d) README.md stays the page a user reads first: at most 200 lines, and its keys at a glance
//       name every key of the schema.
import { describe, expect, test } from "bun:test";
import { existsSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { spawnSync } from "bun";
import { ConfigSchema, parseConfig } from "../core/stages/config";
import { STAGE_TITLES, STAGES, stageLine } from "../core/pipeline";

const REPO = join(import.meta.dir, "..");
const DIST = join(REPO, "dist/nsrun");
const ALGORITHM = join(REPO, "docs/algorithm.md");
const README = join(REPO, "README.md");
const CONFIG_DOC = join(REPO, "docs/config.md");

/** Markdown without its fenced code blocks: a "### 1." inside a code block is not a heading. */
function withoutCode(md: string): string {
  return md.replace(/^```[^\n]*\n[\s\S]*?^```[ \t]*$/gm, "");
}

/** The text of every "## " or "### " section, keyed by its heading line. */
function sections(md: string, level: "##" | "###"): Map<string, string> {
  const out = new Map<string, string>();
  const re = new RegExp(`^${level} .*$`, "gm");
  const heads = [...md.matchAll(re)];
  heads.forEach((h, i) => {
    const end = i + 1 < heads.length ? heads[i + 1].index : md.length;
    out.set(h[0].trim(), md.slice(h.index + h[0].length, end));
  });
  return out;
}

const EXPECTED_HEADINGS = STAGE_TITLES.map((title, i) => `### ${i + 1}. ${title}`);

describe("docs/algorithm.md", () => {
  const doc = withoutCode(readFileSync(ALGORITHM, "utf8"));

  test("its numbered level-3 headings are core/pipeline.ts STAGES, in order, and nothing else", () => {
    // Any level-3 heading that starts with a number counts, however it is spelt ("### 12.", "###3 .").
    const numbered = doc
      .split("\n")
      .filter((line) => /^###\s*\d/.test(line))
      .map((line) => line.trimEnd());
    expect(numbered).toEqual(EXPECTED_HEADINGS);
  });

  test("each stage's section says which process runs it, as core/pipeline.ts does", () => {
    const runsIn = stageProcessesInDoc(doc);
    expect(EXPECTED_HEADINGS.map((h, i) => `${h}: ${runsIn[i]}`)).toEqual(EXPECTED_HEADINGS.map((h, i) => `${h}: ${STAGES[i][1]}`));
  });
});

/** Per stage, in STAGES order: "host", "executor" or "supervisor", from the section's "**Runs in:**" line. */
function stageProcessesInDoc(doc: string): Array<string | null> {
  const bySection = sections(doc, "###");
  return EXPECTED_HEADINGS.map((heading) => {
    const text = bySection.get(heading) ?? "";
    const m = text.match(/\*\*Runs in:\*\* the (host process|executor|supervisor)\b/);
    if (!m) return null;
    return { "host process": "host", executor: "executor", supervisor: "supervisor" }[m[1]] ?? null;
  });
}

describe("nsrun --trace", () => {
  const missing = existsSync(DIST) ? null : `${DIST} is missing: build it with \`npm run build\` (npm test does)`;
  if (missing) console.warn(`docs.test.ts: skipping the --trace run: ${missing}`);

  test.skipIf(missing !== null)(
    `prints the == N. title marker of every stage, exactly in STAGES order, from the process the doc names${missing ? ` (skipped: ${missing})` : ""}`,
    () => {
      // The default box: it needs no rootfs, only the host's /bin/true, and it goes through every stage.
      // --no-cache: planned each time (a start record would skip the first stages) and nothing kept
      // in the caller's cache folder.
      const r = spawnSync([DIST, "run", "--no-cache", "--trace", "--", "/bin/true"], {
        cwd: "/",
        stdout: "pipe",
        stderr: "pipe",
        env: { PATH: process.env.PATH ?? "/usr/bin:/bin" },
      });
      const stderr = r.stderr.toString();
      const markers = stderr
        .split("\n")
        .map((line) => line.match(/^nsrun\[(\w+)\] (== \d+\. .*)$/))
        .filter((m): m is RegExpMatchArray => m !== null);
      // Both at once, so a failed run shows its error next to the markers it got to.
      expect({ code: r.exitCode, markers: markers.map((m) => m[2]), errors: stderr.split("\n").filter((l) => l.startsWith("nsrun: ")) }).toEqual({
        code: 0,
        markers: STAGE_TITLES.map((title) => stageLine(title)),
        errors: [],
      });
      expect(markers.map((m, i) => `${i + 1}. ${m[1]}`)).toEqual(STAGES.map(([, process], i) => `${i + 1}. ${process}`));
    },
  );
});

const E = ConfigSchema.entries;
/** Each table of box.toml and its keys, as core/stages/config.ts's schema has them. */
const TABLES = {
  process: Object.keys(E.process.wrapped.entries),
  namespaces: Object.keys(E.namespaces.wrapped.entries),
  user_namespace: Object.keys(E.user_namespace.wrapped.entries),
  network: Object.keys(E.network.wrapped.entries),
  mounts: Object.keys(E.mounts.wrapped.item.entries),
  limits: Object.keys(E.limits.wrapped.entries),
  security: Object.keys(E.security.wrapped.entries),
};
const tableNames = Object.keys(TABLES) as Array<keyof typeof TABLES>;
const topLevel = Object.keys(E).filter((k) => !(tableNames as string[]).includes(k));
const isArray = (name: keyof typeof TABLES) => E[name].wrapped.type === "array";
/** How the docs write a table's name: `[process]`, `[[mounts]]`. */
const spelt = (name: keyof typeof TABLES) => (isArray(name) ? `\`[[${name}]]\`` : `\`[${name}]\``);

describe("docs/config.md config reference", () => {
  const doc = readFileSync(CONFIG_DOC, "utf8");
  const reference = sections(doc, "##").get("## Config reference") ?? "";

  test("the schema's tables are the ones this test knows (a new table needs a section in docs/config.md)", () => {
    const tablesInSchema = Object.entries(E)
      .filter(([, s]) => "wrapped" in s && ["strict_object", "array"].includes((s.wrapped as { type: string }).type))
      .map(([k]) => k)
      .sort();
    expect(tablesInSchema).toEqual([...tableNames].sort());
  });

  test("each table of the schema has a section whose key table lists exactly the schema's keys", () => {
    const subs = sections(reference, "###");
    const documented: Record<string, string[]> = {};
    const expected: Record<string, string[]> = { "Top level": [...topLevel].sort() };
    documented["Top level"] = keyColumn(subs.get("### Top level"));
    for (const name of tableNames) {
      const heading = spelt(name);
      expected[heading] = [...TABLES[name]].sort();
      documented[heading] = keyColumn(subs.get(`### ${heading}`));
    }
    expect(documented).toEqual(expected);
  });

  test("the full example config passes parseConfig and sets every key of the schema", () => {
    const subs = sections(reference, "###");
    const example = (subs.get("### A full example") ?? "").match(/```toml\n([\s\S]*?)\n```/)?.[1];
    expect(example).toBeString();
    const raw = Bun.TOML.parse(example ?? "") as Record<string, unknown>;
    // parseConfig rejects unknown keys: every key the example shows exists in the schema.
    expect(() => parseConfig(raw, "docs/config.md: A full example")).not.toThrow();
    const shown: string[] = [];
    for (const [k, v] of Object.entries(raw)) {
      shown.push(k);
      if (!(tableNames as string[]).includes(k)) continue;
      const entries = Array.isArray(v) ? v : [v];
      for (const entry of entries) for (const sub of Object.keys(entry as object)) shown.push(`${k}.${sub}`);
    }
    const schema = [...topLevel, ...tableNames, ...tableNames.flatMap((t) => TABLES[t].map((k) => `${t}.${k}`))];
    expect([...new Set(shown)].sort()).toEqual(schema.sort());
    // A [[table]] is written as one in the example, a [table] as one.
    for (const name of tableNames) expect(new RegExp(`^${isArray(name) ? `\\[\\[${name}\\]\\]` : `\\[${name}\\]`}`, "m").test(example ?? "")).toBe(true);
  });
});

describe("README.md", () => {
  const readme = readFileSync(README, "utf8");

  test("has at most 200 lines: the details live in docs/ and CONTRIBUTING.md", () => {
    const lines = readme.split("\n").length - (readme.endsWith("\n") ? 1 : 0);
    expect(lines).toBeLessThanOrEqual(200);
  });

  test("its keys at a glance name every key of the schema, each in its table's row", () => {
    const glance = withoutCode(sections(readme, "##").get("## Config keys at a glance") ?? "");
    /** The backticked words of the row whose first cell is `first`. */
    const row = (first: string) => {
      const line = glance.split("\n").find((l) => l.startsWith("|") && l.split("|")[1].trim() === first) ?? "";
      return [...line.split("|").slice(2).join("|").matchAll(/`([^`]+)`/g)].map((m) => m[1]);
    };
    const missing: string[] = [];
    for (const k of topLevel) if (!row("top level").includes(k)) missing.push(k);
    for (const name of tableNames) for (const k of TABLES[name]) if (!row(spelt(name)).includes(k)) missing.push(`${name}.${k}`);
    expect(missing).toEqual([]);
  });
});

/** The first column of the section's tables headed `| key |`: "`memory`" -> "memory", sorted. */
function keyColumn(section: string | undefined): string[] {
  const keys: string[] = [];
  let inKeyTable = false;
  for (const line of withoutCode(section ?? "").split("\n")) {
    if (!line.startsWith("|")) {
      inKeyTable = false;
      continue;
    }
    const first = line.split("|")[1].trim();
    if (/^key$/i.test(first)) inKeyTable = true;
    else if (inKeyTable && !/^-+$/.test(first.replace(/:/g, ""))) keys.push(first.replace(/^`|`$/g, ""));
  }
  return keys.sort();
}
