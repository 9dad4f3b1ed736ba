// The one place nsrun touches libc. Everything else calls the typed wrappers in ffi/.
//
// libc is bound through one function, syscall(2) (and __errno_location, for errno): bun:ffi compiles
// a trampoline for every symbol it binds, so 42 symbols cost about 0.3 ms of every start and two
// about 0.1. Each call below is that syscall, by its number from ffi/syscalls.ts; a typed array or Buffer
// argument goes in as its address. Like the libc wrappers they replace, they return -1 and set errno
// on failure (syscall(3) does). None of them is one whose libc wrapper does more than the syscall
// (setresuid and setgroups, which glibc applies to every thread, are not here for that reason).
import { dlopen, FFIType, ptr as addressOf, read, type Pointer } from "bun:ffi";
import { errnoName } from "./errno";
import { SYS } from "./syscalls";
import { hintFor } from "./hints";
import { nameBytes } from "./names";
import { NsrunError } from "./error";

const { i32, i64, ptr } = FFIType;

const bound = dlopen("libc.so.6", {
  syscall: { args: [i64, i64, i64, i64, i64, i64, i64], returns: i64 },
  __errno_location: { args: [], returns: ptr },
}).symbols;

type Arg = number | bigint | ArrayBufferView | null;
const word = (a: Arg | undefined): number | bigint => (a === null || a === undefined ? 0 : ArrayBuffer.isView(a) ? (addressOf(a as DataView) as unknown as number) : a);

/** syscall(nr, ...args) as a number: the result, or -1 with errno set. */
function call(nr: number, a?: Arg, b?: Arg, c?: Arg, d?: Arg, e?: Arg, f?: Arg): number {
  return Number(bound.syscall(nr, word(a), word(b), word(c), word(d), word(e), word(f)));
}


let strerrorOf: ((code: number) => unknown) | null = null;

export const libc = {
  /** syscall(2) itself, for the calls without a wrapper here: pointers go in as addresses. */
  syscall: (n: number, a: Arg = 0, b: Arg = 0, c: Arg = 0, d: Arg = 0, e: Arg = 0, f: Arg = 0): number => call(n, a, b, c, d, e, f),
  __errno_location: () => bound.__errno_location(),
  /** Bound on first use: only error messages need it. */
  strerror: (code: number): string => {
    strerrorOf ??= dlopen("libc.so.6", { strerror: { args: [i32], returns: FFIType.cstring } }).symbols.strerror;
    return String(strerrorOf(code));
  },
  read: (fd: number, buf: Arg, count: number) => call(SYS.read, fd, buf, count),
  pread64: (fd: number, buf: Arg, count: number, offset: number) => call(SYS.pread64, fd, buf, count, offset),
  write: (fd: number, buf: Arg, count: number) => call(SYS.write, fd, buf, count),
  close: (fd: number) => call(SYS.close, fd),
  openat: (dirfd: number, path: Arg, flags: number, mode: number) => call(SYS.openat, dirfd, path, flags, mode),
  mkdirat: (dirfd: number, path: Arg, mode: number) => call(SYS.mkdirat, dirfd, path, mode),
  symlinkat: (target: Arg, dirfd: number, path: Arg) => call(SYS.symlinkat, target, dirfd, path),
  pipe2: (fds: Arg, flags: number) => call(SYS.pipe2, fds, flags),
  /** poll(2) as ppoll(2) (arm64 has no poll): `timeout` in ms, negative for none. */
  poll: (fds: Arg, nfds: number, timeout: number) => {
    const ts = timeout < 0 ? null : new BigInt64Array([BigInt(Math.floor(timeout / 1000)), BigInt((timeout % 1000) * 1e6)]);
    return call(SYS.ppoll, fds, nfds, ts, null, 8);
  },
  fcntl: (fd: number, cmd: number, arg: number | bigint) => call(SYS.fcntl, fd, cmd, arg),
  ioctl: (fd: number, request: number, arg: Arg) => call(SYS.ioctl, fd, request, arg),
  kill: (pid: number, sig: number) => call(SYS.kill, pid, sig),
  prctl: (option: number, a: number, b: number, c: number, d: number) => call(SYS.prctl, option, a, b, c, d),
  socket: (domain: number, type: number, protocol: number) => call(SYS.socket, domain, type, protocol),
  socketpair: (domain: number, type: number, protocol: number, fds: Arg) => call(SYS.socketpair, domain, type, protocol, fds),
  recvmsg: (fd: number, msg: Arg, flags: number) => call(SYS.recvmsg, fd, msg, flags),
  memfd_create: (name: Arg, flags: number) => call(SYS.memfd_create, name, flags),
  waitid: (idtype: number, id: number, info: Arg, options: number) => call(SYS.waitid, idtype, id, info, options, null),
  waitpid: (pid: number, status: Arg, options: number) => call(SYS.wait4, pid, status, options, null),
  getuid: () => call(SYS.getuid),
  getgid: () => call(SYS.getgid),
  /** exit_group(2): ends the process now, without Bun's exit handlers. */
  _exit: (status: number): void => void call(SYS.exit_group, status),
};

/** errno of the last failed call; read it right after the call, before anything else can change it. */
export function errno(): number {
  return read.i32(bound.__errno_location() as Pointer, 0);
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

export function cstr(s: string): Uint8Array {
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
