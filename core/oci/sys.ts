// The few raw syscalls the OCI commands make from the host, through libc's syscall(2) wrapper.
import { ptr } from "bun:ffi";
import * as F from "../../ffi/flags";
import { check, cstr, errno, libc } from "../../ffi/libc";

const ARM = process.arch === "arm64";
const SYS = { mknodat: ARM ? 33 : 259, connect: ARM ? 203 : 42, pidfd_open: 434, pidfd_send_signal: 424 };
const S_IFIFO = 0o010000;

export function mkfifo(path: string): void {
  const p = cstr(path);
  check("mknodat", libc.syscall(SYS.mknodat, F.AT_FDCWD, ptr(p), S_IFIFO | 0o600, 0, 0, 0), `mkfifo(${JSON.stringify(path)})`);
}

/** A Unix stream socket connected to `path` (close-on-exec): how the console socket is reached. */
export function connectUnix(path: string): number {
  const fd = check("socket", libc.socket(1 /* AF_UNIX */, 1 /* SOCK_STREAM */ | F.O_CLOEXEC, 0), "socket(AF_UNIX)");
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, 1, true);
  const bytes = new TextEncoder().encode(path);
  if (bytes.length > 107) throw new Error(`the console socket path is too long for a Unix socket: ${path}`);
  addr.set(bytes, 2);
  if (Number(libc.syscall(SYS.connect, fd, ptr(addr), 2 + bytes.length + 1, 0, 0, 0)) !== 0) {
    const code = errno();
    libc.close(fd);
    check("connect", -1, `connect(${JSON.stringify(path)})`);
    throw new Error(`connect: errno ${code}`);
  }
  return fd;
}

/** pidfd_open(2), or -1 when the process is gone. */
export function pidfdOpen(pid: number): number {
  return Number(libc.syscall(SYS.pidfd_open, pid, 0, 0, 0, 0, 0));
}

/** pidfd_send_signal(2): 0, or -errno. */
export function pidfdSignal(pidfd: number, sig: number): number {
  return Number(libc.syscall(SYS.pidfd_send_signal, pidfd, sig, 0, 0, 0, 0)) === 0 ? 0 : -errno();
}

/** Wait until the process behind a pidfd has exited (readable pidfd), at most `ms`. */
export function pidfdWait(pidfd: number, ms: number): boolean {
  const pfd = new Int32Array([pidfd, F.POLLIN]);
  return libc.poll(pfd, 1, ms) > 0;
}

/** Become a child subreaper: orphans below us (the process `exec` forks) are reparented to us. */
export function becomeSubreaper(): void {
  check("prctl", libc.prctl(36 /* PR_SET_CHILD_SUBREAPER */, 1, 0, 0, 0), "prctl(PR_SET_CHILD_SUBREAPER)");
}

/** exit_group(2) without atexit handlers: a created container still runs on memory it shares with this process. */
export function exitNow(code: number): never {
  libc.syscall(ARM ? 94 : 231, code, 0, 0, 0, 0, 0);
  throw new Error("exit_group returned");
}
