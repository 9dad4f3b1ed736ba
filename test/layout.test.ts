// The house rules the code's layout keeps, checked on the source (no build needed):
//   (a) ffi/ is the one ABI boundary: core/ and cmd/ call no `libc.*`, bind no library themselves,
//       and write no syscall number; ffi/ writes syscall numbers only in its tables
//       (ffi/syscalls-*.ts), and the C code takes them from the table build.ts writes;
//   (b) the import graph of core/, cmd/ and ffi/ (every import, export ... from, import() and
//       require(), type-only ones too) has no circle, ffi/ imports nothing of core/ or cmd/,
//       core/ nothing of cmd/, and the library API (core/api.ts) not `nsrun run`'s runner;
//   (c) every repo path a doc (README.md, CONTRIBUTING.md, docs/), a hint users see (ffi/hints.ts)
//       or a comment names exists, and every file name a code comment names;
//   (d) one error root: every error class extends NsrunError (ffi/error.ts);
//   (e) one name for one thing: no two exported functions share a name, but core/tape/calls.ts's
//       emitters, spelt as the syscalls that ffi/ wrappers also make; a kernel constant that
//       ffi/flags.ts or ffi/errno.ts names is defined nowhere else;
//   (f) a box from its start record (cmd/main.ts -> core/host/startrecord.ts -> runplan.ts) loads,
//       statically, no node:fs, node:path, node:os or node:util (about a millisecond), no package
//       (valibot, citty, consola), no command-line parser and no planning stage.
// Each check is a function run first on a sample that breaks the rule (it must find the break),
// then on the real tree (it must find none).
import { describe, expect, test } from "bun:test";
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";

const REPO = join(import.meta.dir, "..");

/** Every file under `dir` (relative to the repo) whose name ends with one of `exts`. */
function files(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (![".git", "node_modules", "out", "dist", "rootfs"].includes(e.name)) walk(p); // not the repo's own, or built
      } else if (exts.some((x) => e.name.endsWith(x))) out.push(relative(REPO, p));
    }
  };
  walk(join(REPO, dir));
  return out.sort();
}

const read = (file: string) => readFileSync(join(REPO, file), "utf8");

/** Source without comments, so a comment may say "libc.close" or "syscall 434" when it explains. */
function code(src: string): string {
  return src.replace(/\/\*[\s\S]*?\*\//g, "").replace(/(^|[^:"'`\\])\/\/.*$/gm, "$1");
}

// ---- (a) ffi/ is the ABI --------------------------------------------------------------------------

/** What a core/ or cmd/ file must not do: each broken rule, with the text that breaks it. */
export function abiViolations(src: string): string[] {
  const body = code(src);
  const found: string[] = [];
  const rules: [string, RegExp][] = [
    ["calls libc", /\blibc\s*\.\s*\w+/g],
    ["imports libc's symbol table", /import\s*\{[^}]*\blibc\b[^}]*\}\s*from\s*["'][^"']*ffi\/libc["']/g],
    ["binds a library (bun:ffi)", /["']bun:ffi["']|\bdlopen\s*\(/g],
    ["writes a syscall number", /\bsyscall\s*\(\s*\d|\bSYS_\w+\s*=\s*[^;]*\d|__NR_\w+|arch\s*===?\s*["'](arm64|x64)["']\s*\?\s*\d+\s*:\s*\d+/g],
  ];
  for (const [rule, re] of rules) for (const m of body.matchAll(re)) found.push(`${rule}: ${m[0]}`);
  return found;
}

/** Syscall numbers written in ffi/ outside the tables (TypeScript), or defined by hand in C. */
export function numberViolations(src: string, c: boolean): string[] {
  const body = code(src);
  const re = c ? /#\s*define\s+(SYS|__NR)_\w+\s+\d+|mov\s+\$\d+\s*,\s*%eax|mov\s+x8\s*,\s*#\d+/g : /\b(SYS|NR)_\w+\s*=\s*[^;\n]*\d|\bsyscall\s*\(\s*\d/g;
  return [...body.matchAll(re)].map((m) => `writes a syscall number: ${m[0]}`);
}

describe("ffi/ is the one ABI boundary", () => {
  test("positive control: the checks find each break in a sample", () => {
    const sample = [
      `import { libc } from "../../ffi/libc";`,
      `libc.close(fd);`,
      `import { dlopen } from "bun:ffi";`,
      `const SYS_flock = 73;`,
      `const n = process.arch === "arm64" ? 32 : 73;`,
      `libc.syscall(434, pid, 0, 0, 0, 0, 0);`,
    ].join("\n");
    const found = abiViolations(sample);
    for (const rule of ["calls libc", "imports libc's symbol table", "binds a library", "writes a syscall number"]) {
      expect(found.some((f) => f.startsWith(rule))).toBe(true);
    }
    expect(numberViolations("const SYS_pidfd_open = 434;", false)).toHaveLength(1);
    expect(numberViolations("#define SYS_read 0", true)).toHaveLength(1);
    expect(numberViolations('"  mov $435,%eax\\n  syscall\\n"  "  mov x8, #94\\n  svc #0\\n"', true)).toHaveLength(2);
    // and a comment that names them is not a break
    expect(abiViolations("// libc.close(fd) and syscall(434) are what ffi/proc.ts wraps")).toEqual([]);
  });

  test("core/ and cmd/ call no libc and write no syscall number", () => {
    const bad: string[] = [];
    for (const f of [...files("core", [".ts"]), ...files("cmd", [".ts"])]) {
      for (const v of abiViolations(read(f))) bad.push(`${f}: ${v}`);
    }
    expect(bad).toEqual([]);
  });

  test("ffi/ writes syscall numbers only in its tables (ffi/syscalls-*.ts)", () => {
    const bad: string[] = [];
    for (const f of files("ffi", [".ts"]).filter((f) => !/^ffi\/syscalls-[\w]+\.ts$/.test(f))) {
      for (const v of numberViolations(read(f), false)) bad.push(`${f}: ${v}`);
    }
    for (const f of files("ffi", [".c", ".h"])) for (const v of numberViolations(read(f), true)) bad.push(`${f}: ${v}`);
    expect(bad).toEqual([]);
  });
});

// ---- (b) no import circles --------------------------------------------------------------------

/** The relative specifiers a source imports, statically read. */
export function importsOf(src: string): string[] {
  const body = code(src);
  const out: string[] = [];
  const re = /(?:^|[\s;])(?:import|export)\s+(?:type\s+)?(?:[^'"`;]*?\s+from\s+)?["']([^"']+)["']|\b(?:require|import)\s*\(\s*["']([^"']+)["']\s*\)/g;
  for (const m of body.matchAll(re)) out.push(m[1] ?? m[2]);
  return out;
}

/** The import graph of the repo's TypeScript under `dirs`: file -> the repo files it imports. */
function importGraph(dirs: string[]): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of dirs.flatMap((d) => files(d, [".ts"])).filter((f) => !f.endsWith(".d.ts"))) {
    const deps = importsOf(read(file))
      .filter((spec) => spec.startsWith("."))
      .map((spec) => resolve(REPO, dirname(file), spec))
      .map((p) => [p, `${p}.ts`, join(p, "index.ts")].find((c) => c.endsWith(".ts") && existsSync(c)))
      .filter((p): p is string => p !== undefined)
      .map((p) => relative(REPO, p));
    graph.set(file, deps);
  }
  return graph;
}

/** Every circle of the graph: its strongly connected components of more than one file, or a file that imports itself (Tarjan). */
export function circles(graph: Map<string, string[]>): string[][] {
  let next = 0;
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const stack: string[] = [];
  const onStack = new Set<string>();
  const found: string[][] = [];
  const visit = (v: string) => {
    index.set(v, next);
    low.set(v, next++);
    stack.push(v);
    onStack.add(v);
    for (const w of graph.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v) as number, low.get(w) as number));
      } else if (onStack.has(w)) low.set(v, Math.min(low.get(v) as number, index.get(w) as number));
    }
    if (low.get(v) !== index.get(v)) return;
    const component: string[] = [];
    let w: string;
    do {
      w = stack.pop() as string;
      onStack.delete(w);
      component.push(w);
    } while (w !== v);
    if (component.length > 1 || (graph.get(v) ?? []).includes(v)) found.push(component.sort());
  };
  for (const v of graph.keys()) if (!index.has(v)) visit(v);
  return found.map((c) => c).sort();
}

/**
 * The one circle left for the launcher's rewrite (the lead's issue), which dissolves it: start.ts
 * starts pasta through network.ts, which runs its tape through start.ts. When it is gone, this
 * entry goes too (the test says so).
 */
describe("the import graph has no circle", () => {
  test("positive control: a circle in a fake graph is found, with its files; a tree has none", () => {
    const fake = new Map([
      ["a.ts", ["b.ts"]],
      ["b.ts", ["c.ts", "d.ts"]],
      ["c.ts", ["a.ts"]],
      ["d.ts", []],
      ["e.ts", ["e.ts"]],
    ]);
    expect(circles(fake)).toEqual([["a.ts", "b.ts", "c.ts"], ["e.ts"]]);
    expect(circles(new Map([["a.ts", ["b.ts", "c.ts"]], ["b.ts", ["c.ts"]], ["c.ts", []]]))).toEqual([]);
    // every form of import is read, a type-only one too, and one in a comment is not
    const src = `import a from "./a";\nimport type { B } from "./b";\nexport { c } from "./c";\nconst d = await import("./d");\nconst e = require("./e");\nimport "./f";\n// import g from "./g";`;
    expect(importsOf(src)).toEqual(["./a", "./b", "./c", "./d", "./e", "./f"]);
  });

  test("core/, cmd/ and ffi/ import in no circle", () => {
    expect(circles(importGraph(["core", "cmd", "ffi"]))).toEqual([]);
  });

  test("ffi/ imports nothing of core/ or cmd/, core/ nothing of cmd/, core/api.ts not the runner of `nsrun run`", () => {
    const graph = importGraph(["core", "cmd", "ffi"]);
    const bad: string[] = [];
    for (const [file, deps] of graph) {
      for (const dep of deps) {
        if (file.startsWith("ffi/") && !dep.startsWith("ffi/")) bad.push(`${file} -> ${dep}`);
        if (file.startsWith("core/") && dep.startsWith("cmd/")) bad.push(`${file} -> ${dep}`);
        // the library (core/api.ts) is no client of `nsrun run`'s runner
        if (file === "core/api.ts" && dep === "core/host/run.ts") bad.push(`${file} -> ${dep}`);
      }
    }
    expect(bad).toEqual([]);
  });
});

// ---- (c) every path named exists ------------------------------------------------------------------

/** The comments of a source (// and block comments). */
function comments(src: string): string {
  return [...src.matchAll(/\/\*[\s\S]*?\*\/|(?:^|[^:"'`\\])(\/\/.*)$/gm)].map((m) => m[1] ?? m[0]).join("\n");
}

/** Built or fetched at build/test time, not in the repository: a path there may be named before it exists. */
const BUILT = ["dist/", "ffi/executor/out/", "fixtures/rootfs/", "fixtures/images/out/"];

/** The repo paths (core/..., docs/..., test/...) `text` names that do not exist (a glob is skipped; ".ts" may be left off). */
export function missingPaths(text: string, exists: (path: string) => boolean): string[] {
  const missing: string[] = [];
  for (const m of text.matchAll(/(?<![\w./-])((?:core|cmd|ffi|test|docs|fixtures|\.ci)\/[\w./*-]*[\w*])/g)) {
    const path = m[1];
    if (path.includes("*") || BUILT.some((b) => path.startsWith(b))) continue;
    if (!exists(path) && !exists(`${path}.ts`)) missing.push(path);
  }
  return missing;
}

/** The file names (`start.ts`, `sys.h`) `text` names that no file of the repo has. */
export function missingNames(text: string, names: Set<string>): string[] {
  return [...text.matchAll(/(?<![\w.<-]|\w\/)([\w-]+\.(?:ts|c|h))\b(?!>)/g)].map((m) => m[1]).filter((n) => !names.has(n));
}

describe("every path a doc, hint or comment names exists", () => {
  test("positive control: a made-up path and file name are found, real ones are not", () => {
    const exists = (p: string) => existsSync(join(REPO, p));
    expect(missingPaths("see core/stages/self.ts and core/pipeline.ts, core/pipeline, test/image-*.test.ts, dist/nsrun", exists)).toEqual(["core/stages/self.ts"]);
    expect(missingNames("the wrappers in ./sys.ts and in io.ts; <linux/sched.h>", new Set(["io.ts"]))).toEqual(["sys.ts"]);
  });

  test("docs, hints and comments name only paths and files that exist", () => {
    const everything = files(".", [""]);
    const names = new Set(everything.map((f) => f.split("/").pop() as string));
    const exists = (p: string) => existsSync(join(REPO, p));
    const bad: string[] = [];
    const docs = ["README.md", "CONTRIBUTING.md", ...files("docs", [".md"])];
    for (const f of docs) for (const p of missingPaths(read(f), exists)) bad.push(`${f}: ${p}`);
    for (const p of missingPaths(read("ffi/hints.ts"), exists)) bad.push(`ffi/hints.ts: ${p}`);
    const sources = ["core", "cmd", "ffi", "test", "fixtures"].flatMap((d) => files(d, [".ts", ".c", ".h"]));
    for (const f of sources) {
      const text = comments(read(f));
      for (const p of missingPaths(text, exists)) bad.push(`${f}: ${p}`);
      for (const n of missingNames(text, names)) bad.push(`${f}: ${n}`);
    }
    expect(bad).toEqual([]);
  });
});

// ---- (d) one error root ---------------------------------------------------------------------------

/** Error classes that do not extend nsrun's root: `class X extends Error`, outside ffi/error.ts. */
export function rootlessErrors(src: string): string[] {
  return [...code(src).matchAll(/class\s+(\w+)\s+extends\s+(?:Error|TypeError|RangeError)\b/g)].map((m) => m[1]);
}

describe("one error root", () => {
  test("positive control: an error class on Error is found, one on NsrunError is not", () => {
    expect(rootlessErrors("export class TarError extends Error {}\nclass A extends NsrunError {}")).toEqual(["TarError"]);
  });

  test("every error class of core/, cmd/ and ffi/ extends NsrunError (ffi/error.ts)", () => {
    const bad: string[] = [];
    for (const f of ["core", "cmd", "ffi"].flatMap((d) => files(d, [".ts"])).filter((f) => f !== "ffi/error.ts")) {
      for (const c of rootlessErrors(read(f))) bad.push(`${f}: ${c}`);
    }
    expect(bad).toEqual([]);
  });

  test("NsrunError carries the step, errno and hint, and a SyscallError and a StageError are one", async () => {
    const { NsrunError } = await import("../ffi/error");
    const { SyscallError } = await import("../ffi/libc");
    const { StageError, toReport } = await import("../core/errors");
    const s = new SyscallError("mount", 'mount("/data")', 1, "a hint");
    expect(s).toBeInstanceOf(NsrunError);
    expect([s.errno, s.hint]).toEqual([1, "a hint"]);
    const e = new StageError("mounts", "it failed", "do this");
    expect(e).toBeInstanceOf(NsrunError);
    expect([e.step, e.hint, e.exitCode]).toEqual(["mounts", "do this", 125]);
    expect(toReport(e, "setup")).toEqual({ message: "mounts: it failed", hint: "do this", exitCode: 125 });
    expect(toReport(s, "setup").message).toBe('setup: mount("/data"): EPERM (Operation not permitted)');
  });
});

// ---- (e) one name for one thing -------------------------------------------------------------------

/** Names exported as functions by more than one file, but a pair of which one is core/tape/calls.ts. */
export function duplicateNames(exports: Map<string, string[]>): string[] {
  const byName = new Map<string, string[]>();
  for (const [file, names] of exports) for (const n of names) byName.set(n, [...(byName.get(n) ?? []), file]);
  return [...byName]
    .filter(([, where]) => where.filter((f) => f !== "core/tape/calls.ts").length > 1)
    .map(([n, where]) => `${n}: ${where.join(", ")}`);
}

describe("one name for one thing", () => {
  test("positive control: a function exported by two files is found; a tape emitter named as a syscall is not", () => {
    const fake = new Map([
      ["core/stages/capabilities.ts", ["emitCapabilitySets"]],
      ["core/oci/emit.ts", ["emitCapabilitySets"]],
      ["core/tape/calls.ts", ["openat2"]],
      ["ffi/fs.ts", ["openat2"]],
    ]);
    expect(duplicateNames(fake)).toEqual(["emitCapabilitySets: core/stages/capabilities.ts, core/oci/emit.ts"]);
  });

  test("no two files of core/, cmd/ and ffi/ export a function of the same name", () => {
    const exports = new Map<string, string[]>();
    for (const f of ["core", "cmd", "ffi"].flatMap((d) => files(d, [".ts"]))) {
      exports.set(f, [...code(read(f)).matchAll(/^export\s+(?:async\s+)?function\s+(\w+)/gm)].map((m) => m[1]));
    }
    expect(duplicateNames(exports)).toEqual([]);
  });
});

/** `const NAME =` definitions in `src` of names in `taken`. */
export function redefined(src: string, taken: Set<string>): string[] {
  return [...code(src).matchAll(/\bconst\s+([A-Z][A-Z0-9_]*)\s*=/g)].map((m) => m[1]).filter((n) => taken.has(n));
}

describe("a kernel constant has one definition", () => {
  test("positive control: a redefined flag or errno is found, a constant of one's own is not", () => {
    expect(redefined("const PR_CAP_AMBIENT = 47;\nconst EPERM = 1;\nconst BLOCK = 512;", new Set(["PR_CAP_AMBIENT", "EPERM"]))).toEqual(["PR_CAP_AMBIENT", "EPERM"]);
  });

  test("no file but ffi/flags.ts and ffi/errno.ts defines a constant they name", async () => {
    const { ERRNO } = await import("../ffi/errno");
    const taken = new Set([...[...read("ffi/flags.ts").matchAll(/^export const (\w+)/gm)].map((m) => m[1]), ...Object.keys(ERRNO)]);
    const bad: string[] = [];
    for (const f of ["core", "cmd", "ffi"].flatMap((d) => files(d, [".ts"])).filter((f) => f !== "ffi/flags.ts" && f !== "ffi/errno.ts")) {
      for (const n of redefined(read(f), taken)) bad.push(`${f}: ${n}`);
    }
    expect(bad).toEqual([]);
  });
});

// ---- (f) what a start record's box loads --------------------------------------------------------

/** The specifiers `src` imports when it loads: import/export ... from and bare import, not type-only, import() or require(). */
export function loadImportsOf(src: string): string[] {
  const re = /(?:^|[\s;])(?:import|export)\s+(?!type\s)(?:[^'"`;]*?\s+from\s+)?["']([^"']+)["']/g;
  return [...code(src).matchAll(re)].map((m) => m[1]);
}

/** Every file `from` loads with it (loadImportsOf, followed), and every bare specifier among them: ["file", ...] and ["node:fs", ...]. */
function loadsWith(from: string[]): { files: string[]; bare: string[] } {
  const seen = new Set<string>();
  const bare = new Set<string>();
  const visit = (file: string) => {
    if (seen.has(file)) return;
    seen.add(file);
    for (const spec of loadImportsOf(read(file))) {
      if (!spec.startsWith(".")) {
        bare.add(spec);
        continue;
      }
      const p = resolve(REPO, dirname(file), spec);
      const hit = [p, `${p}.ts`].find((c) => c.endsWith(".ts") && existsSync(c));
      if (hit) visit(relative(REPO, hit));
    }
  };
  for (const f of from) visit(f);
  return { files: [...seen].sort(), bare: [...bare].sort() };
}

/** What a box's start must not load: the slow modules and the stages only planning needs. */
function heavy({ files, bare }: { files: string[]; bare: string[] }): string[] {
  const slow = bare.filter((b) => b !== "bun:ffi" && b !== "bun");
  const planning = files.filter((f) => /^core\/stages\/(plan|config|boxconfig|hostfacts|mounts|compile|userns|hostpath|network|cgroup)\.ts$/.test(f) || f.startsWith("cmd/"));
  return [...slow, ...planning];
}

describe("a box from its start record loads nothing slow", () => {
  test("positive control: the loads are read (a type-only import and import() are not), and the runner of a planned box does load node:fs and planning", () => {
    expect(loadImportsOf(`import a from "./a";\nimport type { B } from "./b";\nexport { c } from "./c";\nexport type { D } from "./d";\nconst e = await import("./e");\nconst f = require("./f");\nimport "./g";`)).toEqual(["./a", "./c", "./g"]);
    const planned = heavy(loadsWith(["core/host/run.ts"]));
    expect(planned).toContain("node:fs");
    expect(planned).toContain("core/stages/hostfacts.ts");
  });

  test("core/host/startrecord.ts and core/host/runplan.ts (what it loads next) load no node: module, package, parser or planning stage", () => {
    expect(heavy(loadsWith(["core/host/startrecord.ts", "core/host/runplan.ts"]))).toEqual([]);
  });

  test("cmd/main.ts loads nothing before it tries the start record but what it needs to find the line's words", () => {
    expect(loadsWith(["cmd/main.ts"]).files).toEqual(["cmd/main.ts"]);
    expect(read("cmd/main.ts")).toMatch(/import\("\.\.\/core\/host\/startrecord"\)[\s\S]*import\("\.\/run"\)/);
  });
});
