// Fds: pipes between nsrun's own processes (raw fds, blocking reads, no event loop needed), Unix
// sockets, terminals, and the fcntl(2) calls nsrun makes on them.
import { ptr } from "bun:ffi";
import * as F from "./flags";
import { ERRNO } from "./errno";
import { hintFor } from "./hints";
import { check, cstr, errno, libc, q, SyscallError } from "./libc";
import { SYS } from "./syscalls";

/** pipe2(2); with `cloexec` false the fds survive execve, which is how a plan reaches the next stage. */
export function pipe(cloexec: boolean, nonblock = false): [read: number, write: number] {
  const fds = new Int32Array(2);
  check("pipe2", libc.pipe2(fds, (cloexec ? F.O_CLOEXEC : 0) | (nonblock ? F.O_NONBLOCK : 0)), "pipe2()");
  return [fds[0], fds[1]];
}

/** Write all of `data` to `fd` (a pipe's, a file's: `shown` names it in an error), retrying on EINTR. */
export function writeAll(fd: number, data: Uint8Array, shown = `fd ${fd}`): void {
  let off = 0;
  while (off < data.length) {
    const n = Number(libc.write(fd, ptr(data, off), data.length - off));
    if (n < 0) {
      if (errno() === ERRNO.EINTR) continue;
      check("write", n, `write(${shown === `fd ${fd}` ? shown : q(shown)})`);
    }
    off += n;
  }
}

/** Reads until end of file (every writer closed). */
export function readAll(fd: number): Buffer {
  const chunks: Buffer[] = [];
  const buf = Buffer.alloc(65536);
  for (;;) {
    const n = Number(libc.read(fd, buf, buf.length));
    if (n === 0) break;
    if (n < 0) {
      if (errno() === ERRNO.EINTR) continue;
      check("read", n, `read(fd ${fd})`);
    }
    chunks.push(Buffer.from(buf.subarray(0, n)));
  }
  return Buffer.concat(chunks);
}

/** poll(2) for input on `fds` (timeout in ms, negative for none): which are readable, or null with errno set. */
function pollIn(fds: number[], timeout: number): boolean[] | null {
  // Loops, not forEach and map: a box's start calls none of JavaScriptCore's built-in array methods
  // (each is compiled on its first call: core/pipeline.ts).
  const pfds = new Int32Array(fds.length * 2);
  for (let i = 0; i < fds.length; i++) {
    pfds[i * 2] = fds[i];
    pfds[i * 2 + 1] = F.POLLIN;
  }
  if (libc.poll(pfds, fds.length, timeout) < 0) return null;
  // struct pollfd is { int fd; short events; short revents; }: revents is the 4th 16-bit half.
  const revents = new Uint16Array(pfds.buffer);
  const ready: boolean[] = [];
  for (let i = 0; i < fds.length; i++) ready.push((revents[i * 4 + 3] & (F.POLLIN | F.POLLERR | F.POLLHUP)) !== 0);
  return ready;
}

/**
 * Block until at least one of `fds` is readable (or at its end), retrying on EINTR; returns which.
 * The caller's thread waits in ppoll(2): no event loop turns meanwhile.
 */
export function waitReadable(fds: number[]): boolean[] {
  for (;;) {
    const ready = pollIn(fds, -1);
    if (ready) return ready;
    if (errno() !== ERRNO.EINTR) check("ppoll", -1, `ppoll(${fds.join(", ")})`);
  }
}

/** One read(2) into `buf`, retrying on EINTR: the byte count, 0 at end of file, -errno for a non-blocking fd with nothing (EAGAIN). */
export function readSome(fd: number, buf: Uint8Array): number {
  for (;;) {
    const n = Number(libc.read(fd, buf, buf.length));
    if (n >= 0) return n;
    const code = errno();
    if (code === ERRNO.EINTR) continue;
    if (code === ERRNO.EAGAIN) return -code;
    check("read", n, `read(fd ${fd})`);
  }
}

/** A memory file (memfd, close-on-exec) for a helper's output: give it as the helper's stdout or stderr, read it with readOutput. */
export function outputFile(name: string): number {
  return check("memfd_create", libc.memfd_create(cstr(name), F.MFD_CLOEXEC), `memfd_create(${JSON.stringify(name)})`);
}

/** What was written to an output file, from its start (the writer moved the shared offset), at most `limit` bytes. */
export function readOutput(fd: number, limit = 65536): string {
  const buf = Buffer.alloc(limit);
  return buf.subarray(0, readAt(fd, buf, 0)).toString("utf8");
}

/** pread(2) into all of `buf` from `offset`, retrying on EINTR: the byte count (short at end of file or on an error). */
export function readAt(fd: number, buf: Uint8Array, offset: number): number {
  let got = 0;
  while (got < buf.length) {
    const n = Number(libc.pread64(fd, ptr(buf, got), buf.length - got, offset + got));
    if (n < 0 && errno() === ERRNO.EINTR) continue;
    if (n <= 0) break;
    got += n;
  }
  return got;
}

/**
 * A small file's bytes (at most `limit`: a longer one is an error), read with open(2) and pread(2),
 * not node:fs, which costs about a millisecond to load: what a box's start reads.
 */
export function readBytes(path: string, limit = 1 << 20): Uint8Array {
  const fd = check("openat", libc.openat(F.AT_FDCWD, cstr(path), F.O_RDONLY | F.O_CLOEXEC, 0), `open(${q(path)})`);
  try {
    // A /proc file says size 0: read into a buffer that doubles until the file ends.
    let buf = new Uint8Array(Math.min(4096, limit + 1));
    let n = readAt(fd, buf, 0);
    while (n === buf.length && n <= limit) {
      const more = new Uint8Array(Math.min(buf.length * 2, limit + 1));
      more.set(buf);
      buf = more;
      n += readAt(fd, buf.subarray(n), n);
    }
    if (n > limit) throw new SyscallError("read", `read(${q(path)})`, ERRNO.EFBIG);
    return buf.subarray(0, n);
  } finally {
    libc.close(fd);
  }
}

/** A small file's text (UTF-8), as readBytes reads it. */
export function readText(path: string, limit = 1 << 20): string {
  return new TextDecoder().decode(readBytes(path, limit));
}

/** Write `text` to an existing file (open(2) O_WRONLY, one write): a /proc file such as uid_map. */
export function writeText(path: string, text: string): void {
  const fd = check("openat", libc.openat(F.AT_FDCWD, cstr(path), F.O_WRONLY | F.O_CLOEXEC, 0), `open(${q(path)})`);
  try {
    writeAll(fd, new TextEncoder().encode(text), path);
  } finally {
    libc.close(fd);
  }
}

/** close(2), ignoring errors: every caller closes an fd it owns, once. */
export function close(fd: number): void {
  libc.close(fd);
}

/** Grow a pipe's buffer to `size` bytes (F_SETPIPE_SZ), so a write of that much never blocks; false when it could not. */
export function setPipeSize(fd: number, size: number): boolean {
  return libc.fcntl(fd, F.F_SETPIPE_SZ, size) >= 0;
}

/** A close-on-exec copy of `fd` at `min` or above (F_DUPFD_CLOEXEC). */
export function dupAtLeast(fd: number, min: number): number {
  return check("fcntl", libc.fcntl(fd, F.F_DUPFD_CLOEXEC, min), `fcntl(${fd}, F_DUPFD_CLOEXEC, ${min})`);
}

/** True when a read on the fd would not block: data, end of file, or an error waits there. */
export function readable(fd: number): boolean {
  return pollIn([fd], 0)?.[0] ?? false;
}

/** True when a pipe's reader would see end of file now: readable, with no byte left (FIONREAD 0). */
export function atEndOfFile(fd: number): boolean {
  if (!readable(fd)) return false;
  const n = new Int32Array(1);
  return libc.ioctl(fd, F.FIONREAD, n) === 0 && n[0] === 0;
}

/** socketpair(AF_UNIX, SOCK_STREAM|SOCK_CLOEXEC): two connected Unix sockets. */
export function socketPair(): [number, number] {
  const fds = new Int32Array(2);
  check("socketpair", libc.socketpair(F.AF_UNIX, F.SOCK_STREAM | F.SOCK_CLOEXEC, 0, fds), "socketpair(AF_UNIX)");
  return [fds[0], fds[1]];
}

/** A Unix stream socket connected to `path` (close-on-exec): how an OCI console socket is reached. */
export function connectUnix(path: string): number {
  const bytes = new TextEncoder().encode(path);
  // struct sockaddr_un: sun_family (2 bytes), sun_path (108, NUL-terminated)
  if (bytes.length > 107) throw new SyscallError("connect", `connect(${q(path)})`, ERRNO.ENAMETOOLONG, "a Unix socket's path is at most 107 bytes");
  const fd = check("socket", libc.socket(F.AF_UNIX, F.SOCK_STREAM | F.SOCK_CLOEXEC, 0), "socket(AF_UNIX)");
  const addr = new Uint8Array(110);
  new DataView(addr.buffer).setUint16(0, F.AF_UNIX, true);
  addr.set(bytes, 2);
  if (Number(libc.syscall(SYS.connect, fd, ptr(addr), 2 + bytes.length + 1, 0, 0, 0)) !== 0) {
    const code = errno();
    libc.close(fd);
    throw new SyscallError("connect", `connect(${q(path)})`, code, hintFor("connect", code));
  }
  return fd;
}

/** recvmsg(2) of one fd sent with SCM_RIGHTS (see core/tape/calls.ts sendFd); null at end of file. */
export function receiveFd(sock: number): number | null {
  const byte = new Uint8Array(1);
  const iov = new BigUint64Array([BigInt(ptr(byte)), 1n]);
  const control = new Uint8Array(24);
  const msg = new BigUint64Array(7);
  msg[2] = BigInt(ptr(iov));
  msg[3] = 1n;
  msg[4] = BigInt(ptr(control));
  msg[5] = 24n;
  // MSG_CMSG_CLOEXEC | MSG_DONTWAIT: the fd was sent before the sender exec'd; never wait for one.
  const n = Number(libc.recvmsg(sock, msg, 0x40000000 | 0x40));
  if (n <= 0) return null;
  const view = new DataView(control.buffer);
  if (view.getInt32(8, true) !== 1 || view.getInt32(12, true) !== 1) return null; // SOL_SOCKET, SCM_RIGHTS
  return view.getInt32(16, true);
}

/** Whether fd is a terminal (TCGETS works on it), without loading node:tty. */
export function isTerminal(fd: number): boolean {
  return libc.ioctl(fd, F.TCGETS, new Uint8Array(64)) === 0;
}

/** The terminal's size (TIOCGWINSZ), or null when fd is not one. */
export function windowSize(fd: number): { rows: number; cols: number } | null {
  const ws = new Uint16Array(4);
  if (libc.ioctl(fd, F.TIOCGWINSZ, ws) !== 0) return null;
  return { rows: ws[0], cols: ws[1] };
}

/** Clear FD_CLOEXEC: the fd survives the next execve(2) (one handed to the supervisor). */
export function keepAcrossExec(fd: number): void {
  check("fcntl", libc.fcntl(fd, F.F_SETFD, 0), `fcntl(${fd}, F_SETFD, 0)`);
}
