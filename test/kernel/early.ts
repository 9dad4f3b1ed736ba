// The kernel experiments' first moves (probe.ts), before anything else is loaded.
//
// unshare(CLONE_NEWUSER) fails with EINVAL once a process has a second thread, and Bun grows
// threads as it allocates: binding ffi/libc.ts's full symbol table is already enough to start one.
// So this module binds only the five symbols needed to create a user namespace and write its id
// maps; an experiment imports everything else afterwards.
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";

const { i32, i64, u32, u64, ptr } = FFIType;

const early = dlopen("libc.so.6", {
  unshare: { args: [i32], returns: i32 },
  openat: { args: [i32, ptr, i32, u32], returns: i32 },
  write: { args: [i32, ptr, u64], returns: i64 },
  close: { args: [i32], returns: i32 },
  __errno_location: { args: [], returns: ptr },
}).symbols;

const AT_FDCWD = -100;
const O_WRONLY_CLOEXEC = 0x1 | 0x80000;

/** A failed early call: the caller turns it into a SyscallError once libc.ts may be loaded. */
export interface EarlyFailure {
  syscall: string;
  call: string;
  errno: number;
}

function fail(syscall: string, call: string): EarlyFailure {
  return { syscall, call, errno: read.i32(early.__errno_location() as Pointer, 0) };
}

export function earlyUnshare(flags: number, shown: string): EarlyFailure | null {
  return early.unshare(flags) < 0 ? fail("unshare", `unshare(${shown})`) : null;
}

export function earlyWriteFile(path: string, text: string): EarlyFailure | null {
  const fd = early.openat(AT_FDCWD, Buffer.from(`${path}\0`), O_WRONLY_CLOEXEC, 0);
  if (fd < 0) return fail("open", `open(${JSON.stringify(path)}, O_WRONLY)`);
  const buf = Buffer.from(text);
  const n = Number(early.write(fd, buf, buf.length));
  const err = n < 0 ? fail("write", `write(${JSON.stringify(path)}, ${JSON.stringify(text.trimEnd())})`) : null;
  early.close(fd);
  return err;
}
