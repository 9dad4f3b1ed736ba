// The namespace files /proc/PID/ns/*: open one, ask the kernel about it with the nsfs ioctls
// (ioctl_ns(2)), close it. The libc calls for `nsrun ns`, through ffi/libc.ts's symbol table.
import { fstatSync } from "node:fs";
import { AT_FDCWD, O_CLOEXEC, O_RDONLY } from "./flags";
import { errno as errnoNow, errnoName, libc } from "./libc";
import { NsrunError } from "./error";

// _IO(0xb7, n) from <linux/nsfs.h>: no size or direction bits, so the numbers are plain.
export const NS_GET_USERNS = 0xb701;
export const NS_GET_PARENT = 0xb702;
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
