// The one place nsrun binds libc's common symbols (fs.ts and probe.ts bind a few of their own).
// core/ and cmd/ never call these: they call the typed wrappers in the other ffi/ files.
import { dlopen, FFIType, read, type Pointer } from "bun:ffi";
import { errnoName } from "./errno";
import { hintFor } from "./hints";
import { nameBytes } from "./names";
import { NsrunError } from "./error";

const { i32, i64, u32, u64, ptr } = FFIType;

export const libc = dlopen("libc.so.6", {
  __errno_location: { args: [], returns: ptr },
  strerror: { args: [i32], returns: FFIType.cstring },
  // Older glibc (Ubuntu 22.04's 2.35) has no wrapper for openat2, open_tree, mount_setattr, pidfd_open, ...:
  // their numbers come from ffi/syscalls.ts.
  syscall: { args: [i64, i64, i64, i64, i64, i64], returns: i64 },
  openat: { args: [i32, ptr, i32, u32], returns: i32 },
  mkdirat: { args: [i32, ptr, u32], returns: i32 },
  symlinkat: { args: [ptr, i32, ptr], returns: i32 },
  close: { args: [i32], returns: i32 },
  read: { args: [i32, ptr, u64], returns: i64 },
  write: { args: [i32, ptr, u64], returns: i64 },
  pipe2: { args: [ptr, i32], returns: i32 },
  poll: { args: [ptr, u64, i32], returns: i32 },
  fcntl: { args: [i32, i32, i64], returns: i32 },
  prctl: { args: [i32, u64, u64, u64, u64], returns: i32 },
  socket: { args: [i32, i32, i32], returns: i32 },
  ioctl: { args: [i32, u64, ptr], returns: i32 },
  kill: { args: [i32, i32], returns: i32 },
  _exit: { args: [i32], returns: FFIType.void },
  waitid: { args: [i32, u32, ptr, i32], returns: i32 },
  waitpid: { args: [i32, ptr, i32], returns: i32 },
  getuid: { args: [], returns: u32 },
  memfd_create: { args: [ptr, u32], returns: i32 },
  socketpair: { args: [i32, i32, i32, ptr], returns: i32 },
  recvmsg: { args: [i32, ptr, i32], returns: i64 },
}).symbols;

/** errno of the last failed call; read it right after the call, before anything else can change it. */
export function errno(): number {
  return read.i32(libc.__errno_location() as Pointer, 0);
}

export { errnoName };

export function strerror(code: number): string {
  return String(libc.strerror(code));
}

/**
 * A failed syscall, in the shape crun prints it: ``mount "/data": EPERM (Operation not permitted)``.
 * `call` is the syscall with its main arguments, paths quoted; `hint` says what to do where we know.
 */
export class SyscallError extends NsrunError {
  constructor(
    readonly syscall: string,
    readonly call: string,
    readonly errno: number,
    readonly hint?: string,
  ) {
    super(`${call}: ${errnoName(errno)} (${strerror(errno)})`);
    this.name = "SyscallError";
  }
  get errnoName(): string {
    return errnoName(this.errno);
  }
}

/** Throws a SyscallError with errno when a libc call returned -1. */
export function check(syscall: string, ret: number | bigint, call: string): number {
  const n = Number(ret);
  if (n < 0) {
    const code = errno();
    throw new SyscallError(syscall, call, code, hintFor(syscall, code));
  }
  return n;
}

/** A NUL-terminated copy of a string for a `const char *` argument. */
export { nameBytes, nameFromBytes } from "./names";

export function cstr(s: string): Buffer {
  return nameBytes(`${s}\0`);
}


/** Quote a path the way errors show it. */
export function q(s: string): string {
  return JSON.stringify(s);
}

/** Clear O_NONBLOCK on an fd (a no-op when it is not set). */
export function clearNonblock(fd: number): void {
  const fl = libc.fcntl(fd, 3 /* F_GETFL */, 0);
  if (fl >= 0 && fl & 0x800 /* O_NONBLOCK */) libc.fcntl(fd, 4 /* F_SETFL */, fl & ~0x800);
}
