// The namespace files /proc/PID/ns/*: open one, ask the kernel about it with the nsfs ioctls
// (ioctl_ns(2)), close it. The libc calls for `nsrun ns` and for joining a namespace by path
// (linux.namespaces[].path), through ffi/libc.ts's symbol table.
import { fstatSync, statSync } from "node:fs";
import { AT_FDCWD, O_CLOEXEC, O_NOCTTY, O_NONBLOCK, O_RDONLY } from "./flags";
import { errno as errnoNow, errnoName, libc } from "./libc";
import { NsrunError } from "./error";

// _IO(0xb7, n) from <linux/nsfs.h>: no size or direction bits, so the numbers are plain.
export const NS_GET_USERNS = 0xb701;
export const NS_GET_PARENT = 0xb702;
export const NS_GET_NSTYPE = 0xb703;
export const NS_GET_OWNER_UID = 0xb704;

/** A failed nsfs call. `code` is the errno's name ("EPERM"), as on Node's own fs errors. */
export class NsfsError extends NsrunError {
  readonly code: string;
  constructor(
    readonly call: string,
    readonly errno: number,
  ) {
    const code = errnoName(errno);
    super(`${call}: ${code}`);
    this.name = "NsfsError";
    this.code = code;
  }
}

/** Throws an NsfsError when a libc call returned -1; errno is read at once, before anything else runs. */
function checked(ret: number, call: () => string): number {
  if (ret < 0) throw new NsfsError(call(), errnoNow());
  return ret;
}

/** open(2) a namespace file read-only; the kernel checks ptrace read access to the process. */
export function openNs(path: string): number {
  return checked(libc.openat(AT_FDCWD, Buffer.from(`${path}\0`), O_RDONLY | O_CLOEXEC, 0), () => `open(${JSON.stringify(path)})`);
}

/**
 * Open a file to join as a namespace, as a config names it: O_NONBLOCK and O_NOCTTY, so that a FIFO
 * planted at the path fails at once instead of waiting for a writer forever, and a terminal does not
 * become ours. Returns the fd and the namespace's kind as its CLONE_NEW* flag (NS_GET_NSTYPE), or
 * kind null when the file is not on nsfs: then it is no namespace file, and no ioctl is sent to
 * whatever it is. The caller keeps the fd (setns(2) gets it) or closes it.
 */
export function openNsToJoin(path: string): { fd: number; type: number | null } {
  const fd = checked(libc.openat(AT_FDCWD, Buffer.from(`${path}\0`), O_RDONLY | O_NONBLOCK | O_NOCTTY | O_CLOEXEC, 0), () => `open(${JSON.stringify(path)})`);
  // Every namespace file is an inode of the one nsfs mount: its device is /proc/self/ns/user's.
  if (fstatSync(fd).dev !== statSync("/proc/self/ns/user").dev) return { fd, type: null };
  const type = libc.ioctl(fd, NS_GET_NSTYPE, null);
  return { fd, type: type < 0 ? null : type };
}

/** The namespace's inode number: what `ls -l /proc/PID/ns` shows in brackets. */
export function nsInode(fd: number): number {
  return fstatSync(fd).ino;
}

/** NS_GET_PARENT: a new fd for the parent user or PID namespace. EPERM: no parent, or outside our scope. */
export function nsParent(fd: number): number {
  return checked(libc.ioctl(fd, NS_GET_PARENT, null), () => `ioctl(fd ${fd}, NS_GET_PARENT)`);
}

/** NS_GET_USERNS: a new fd for the user namespace that owns this namespace. */
export function nsOwnerUserns(fd: number): number {
  return checked(libc.ioctl(fd, NS_GET_USERNS, null), () => `ioctl(fd ${fd}, NS_GET_USERNS)`);
}

/** NS_GET_OWNER_UID: the uid (in our user namespace) of the user namespace's creator. */
export function nsOwnerUid(fd: number): number {
  const uid = new Uint32Array(1);
  checked(libc.ioctl(fd, NS_GET_OWNER_UID, uid), () => `ioctl(fd ${fd}, NS_GET_OWNER_UID)`);
  return uid[0];
}

export function closeNs(fd: number): void {
  libc.close(fd);
}
