// Builds nsrun's two small C programs with gcc, for `bun run build` (before `bun build --compile`
// embeds them):
//   out/executor.so   the tape executor, loaded into nsrun with dlopen (ffi/executor/load.ts)
//   out/stub.bin      the static stub that starts the box's command and supervises it
//   out/programs.ts   both, as base64 text: what load.ts embeds (reading an embedded file would
//                     load node:fs, about a millisecond of every box's start)
// Both are freestanding: no libc, no dynamic loader, no undefined symbol (checked here).
//
//   bun ffi/executor/build.ts [--arch=x86_64|aarch64]   (a cross gcc, e.g. aarch64-linux-gnu-gcc, for arm64)
import { spawnSync } from "bun";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { protocolAsserts } from "./protocol";
import { syscallTable } from "../syscalls";

const DIR = import.meta.dir;
const OUT = join(DIR, "out");
const FREESTANDING = [
  "-O2",
  "-nostdlib",
  "-ffreestanding",
  "-fno-builtin",
  "-fno-stack-protector", // the canary lives in thread-local storage, which the executor's child must not touch
  "-fno-tree-loop-distribute-patterns", // no memset/memcpy calls made up by the optimiser
  "-fno-asynchronous-unwind-tables",
  "-Wall",
  "-Wextra",
  "-Werror",
  "-Wl,-z,noexecstack",
  "-Wl,--build-id=none",
  "-s",
];

function gcc(): string {
  const arch = process.argv.find((a) => a.startsWith("--arch="))?.slice(7);
  if (arch && arch !== (process.arch === "arm64" ? "aarch64" : "x86_64")) return `${arch}-linux-gnu-gcc`;
  return process.env.CC ?? "gcc";
}

function compile(args: string[], out: string): void {
  const cc = gcc();
  const r = spawnSync([cc, ...FREESTANDING, ...args, "-o", join(OUT, out)], { cwd: DIR, stdout: "inherit", stderr: "inherit" });
  if (r.exitCode === null && r.signalCode === null) {
    console.error(`nsrun build: ${cc} not found: install it (Debian/Ubuntu: apt-get install gcc)`);
    process.exit(1);
  }
  if (r.exitCode !== 0) {
    console.error(`nsrun build: ${cc} failed building ffi/executor/out/${out}`);
    process.exit(1);
  }
}

/** out/syscalls.h: SYS_name for both architectures, from nsrun's one table (ffi/syscalls.ts). */
function syscallsHeader(): string {
  const defines = (t: Readonly<Record<string, number>>) => Object.entries(t).map(([n, nr]) => `#define SYS_${n} ${nr}`).join("\n");
  return `// Written by ffi/executor/build.ts from ffi/syscalls-x86_64.ts and ffi/syscalls-arm64.ts: do not edit.
#if defined(__x86_64__)
${defines(syscallTable("x64"))}
#elif defined(__aarch64__)
${defines(syscallTable("arm64"))}
#endif
`;
}

mkdirSync(OUT, { recursive: true });
writeFileSync(join(OUT, "syscalls.h"), syscallsHeader());
writeFileSync(join(OUT, "protocol_check.h"), protocolAsserts());
try {
  compile(["-fPIC", "-shared", "-Wl,--no-undefined", "executor.c"], "executor.so");
  compile(["-static", "-fno-pie", "-no-pie", "stub.c"], "stub.bin");
  const base64 = (name: string) => JSON.stringify(readFileSync(join(OUT, name)).toString("base64"));
  writeFileSync(join(OUT, "programs.ts"), `// Made by ffi/executor/build.ts from executor.so and stub.bin.\nexport const EXECUTOR = ${base64("executor.so")};\nexport const STUB = ${base64("stub.bin")};\n`);
} catch (e) {
  console.error(`nsrun build: ${gcc()}: ${(e as Error).message}; install gcc (Debian/Ubuntu: apt-get install gcc)`);
  process.exit(1);
}
