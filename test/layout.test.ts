// The house rules the code's layout keeps, checked on the source (no build needed):
//   (a) ffi/ is the one ABI boundary: core/ and cmd/ call no `libc.*`, bind no library themselves,
//       and write no syscall number; ffi/ writes syscall numbers only in its tables
//       (ffi/syscalls-*.ts), and the C code takes them from the table build.ts writes.
// Each check is a function run first on a sample that breaks the rule (it must find the break),
// then on the real tree (it must find none).
import { describe, expect, test } from "bun:test";
import { readdirSync, readFileSync } from "node:fs";
import { join, relative } from "node:path";

const REPO = join(import.meta.dir, "..");

/** Every file under `dir` (relative to the repo) whose name ends with one of `exts`. */
function files(dir: string, exts: string[]): string[] {
  const out: string[] = [];
  const walk = (d: string) => {
    for (const e of readdirSync(d, { withFileTypes: true })) {
      const p = join(d, e.name);
      if (e.isDirectory()) {
        if (e.name !== "node_modules" && e.name !== "out") walk(p);
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
  const re = c ? /#\s*define\s+(SYS|__NR)_\w+\s+\d+/g : /\b(SYS|NR)_\w+\s*=\s*[^;\n]*\d|\bsyscall\s*\(\s*\d/g;
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
