// Loading nsrun's two C programs (ffi/executor/) and starting a box's first process.
//
// Both are embedded in the executable as base64 text (out/programs.ts, made by build.ts), not as
// files: reading one of Bun's embedded files would load node:fs. The executor is written to an
// anonymous memory file and dlopen(3)ed from /proc/self/fd/N: dlopen of an embedded path itself
// would make Bun extract it to a file in the shared temporary folder and load it from there on later
// runs. The stub gets a fresh memfd for each box, write-sealed, so no box can change what another
// box's command starts from.
import { dlopen, FFIType, ptr } from "bun:ffi";
import { EXECUTOR, STUB } from "./out/programs";
import { ERRNO } from "../errno";
import * as F from "../flags";
import { check, cstr, errno, libc, SyscallError } from "../libc";
import { SYS } from "../syscalls";

interface Executor {
  spawn(tape: Uint8Array): number;
  release(tape: Uint8Array): void;
  /** Make these signals wait, pending, for the program this process execs next (see executor.c). */
  holdSignals(signals: number[]): void;
  /** Catch these signals in the executor: each is recorded, and a byte written to `fd` wakes the caller (see executor.c). */
  watchSignals(signals: number[], fd: number): void;
  /** The signals recorded since the last call (watchSignals), and forget them. */
  takeSignals(): number[];
}

// Uint8Array.fromBase64 (ES2026, in Bun's JavaScriptCore): Buffer's first use costs about 0.1 ms.
const fromBase64 = (text: string): Uint8Array => (Uint8Array as unknown as { fromBase64(s: string): Uint8Array }).fromBase64(text);

/** A sigset_t's 64 bits. A loop, not reduce: the start path calls no built-in array method (core/pipeline.ts). */
function maskOf(signals: number[]): bigint {
  let mask = 0n;
  for (let i = 0; i < signals.length; i++) mask |= 1n << BigInt(signals[i] - 1);
  return mask;
}

let executor: Executor | null = null;

/** The executor's functions, loaded once per process (about half a millisecond). */
export function loadExecutor(): Executor {
  if (executor) return executor;
  const fd = memfdWith("nsrun-executor", fromBase64(EXECUTOR), F.MFD_CLOEXEC);
  let lib: ReturnType<typeof open>;
  try {
    lib = open(`/proc/self/fd/${fd}`);
  } finally {
    libc.close(fd);
  }
  const { nsrun_spawn, nsrun_release, nsrun_hold_signals, nsrun_watch_signals, nsrun_take_signals } = lib.symbols;
  executor = {
    spawn: (tape) => Number(nsrun_spawn(ptr(tape))),
    release: (tape) => nsrun_release(ptr(tape)),
    holdSignals: (signals) => void nsrun_hold_signals(maskOf(signals)),
    watchSignals: (signals, fd) => {
      const r = Number(nsrun_watch_signals(maskOf(signals), fd));
      if (r < 0) throw new SyscallError("rt_sigaction", "rt_sigaction()", -r);
    },
    takeSignals: () => {
      const mask = BigInt(nsrun_take_signals());
      const out: number[] = [];
      for (let s = 1; s <= 64; s++) if ((mask >> BigInt(s - 1)) & 1n) out.push(s);
      return out;
    },
  };
  return executor;
}

function open(path: string) {
  return dlopen(path, {
    nsrun_spawn: { args: [FFIType.ptr], returns: FFIType.i64 },
    nsrun_release: { args: [FFIType.ptr], returns: FFIType.void },
    nsrun_hold_signals: { args: [FFIType.u64], returns: FFIType.i64 },
    nsrun_watch_signals: { args: [FFIType.u64, FFIType.i64], returns: FFIType.i64 },
    nsrun_take_signals: { args: [], returns: FFIType.u64 },
  });
}

let stubBytes: Uint8Array | null = null;

/** A new memfd holding the stub, sealed against writes and resizing; close-on-exec. */
export function sealedStub(): number {
  stubBytes ??= fromBase64(STUB);
  const fd = memfdWith("nsrun", stubBytes, F.MFD_CLOEXEC | F.MFD_ALLOW_SEALING | F.MFD_EXEC);
  check("fcntl", libc.fcntl(fd, F.F_ADD_SEALS, F.F_SEAL_SEAL | F.F_SEAL_SHRINK | F.F_SEAL_GROW | F.F_SEAL_WRITE), "fcntl(memfd, F_ADD_SEALS)");
  return fd;
}

function memfdWith(name: string, bytes: Uint8Array, flags: number): number {
  let fd = libc.memfd_create(cstr(name), flags);
  // MFD_EXEC is Linux 6.3's; older kernels refuse the unknown flag, and every memfd is executable there.
  if (fd < 0 && errno() === ERRNO.EINVAL && flags & F.MFD_EXEC) fd = libc.memfd_create(cstr(name), flags & ~F.MFD_EXEC);
  check("memfd_create", fd, `memfd_create(${JSON.stringify(name)})`);
  let off = 0;
  while (off < bytes.length) {
    const n = Number(libc.write(fd, ptr(bytes, off), bytes.length - off));
    if (n <= 0) {
      const code = errno();
      libc.close(fd);
      throw new SyscallError("write", `write(memfd ${JSON.stringify(name)})`, code);
    }
    off += n;
  }
  return fd;
}

/**
 * A sealed launch's tape in a memfd of its own (close-on-exec; the launcher clears that in the child
 * that execs the stub), which the stub maps shared: nsrun reads the progress and results back.
 */
export function tapeFile(bytes: Uint8Array): number {
  return memfdWith("nsrun-tape", bytes, F.MFD_CLOEXEC);
}

/** Tape memory: page-aligned and out of the JavaScript heap's way, valid until the box is started. */
export function tapeMemory(size: number): { bytes: Uint8Array; address: number } {
  const bytes = new Uint8Array(new ArrayBuffer(Math.max(size, 4096)));
  return { bytes, address: Number(ptr(bytes)) };
}

/** execveat(fd, "", argv, env, AT_EMPTY_PATH): replaces this process. Returns errno if it could not. */
export function execveFd(fd: number, argv: string[], env: string[]): number {
  const keep = [...argv, ...env].map(cstr); // referenced until the call returns
  const vector = (list: Uint8Array[]) => new BigUint64Array([...list.map((b) => BigInt(ptr(b))), 0n]);
  const args = vector(keep.slice(0, argv.length));
  const envp = vector(keep.slice(argv.length));
  libc.syscall(SYS.execveat, fd, ptr(cstr("")), ptr(args), ptr(envp), F.AT_EMPTY_PATH, 0);
  return errno();
}
