// libc calls that only test/kernel/ needs: the experiments that show the kernel's namespace rules.
// It has its own small dlopen, so that ffi/libc.ts keeps exactly the symbols nsrun itself uses.
import { dlopen, FFIType } from "bun:ffi";
import { cstr, errno, errnoName, libc } from "./libc";

const { i32, ptr } = FFIType;

export const extra = dlopen("libc.so.6", {
  chroot: { args: [ptr], returns: i32 },
  getpid: { args: [], returns: i32 },
  getppid: { args: [], returns: i32 },
}).symbols;

// <linux/sched.h>: the clone(2) flags that make a thread (what pthread_create passes).
export const CLONE_VM = 0x00000100;
export const CLONE_FS = 0x00000200;
export const CLONE_FILES = 0x00000400;
export const CLONE_SIGHAND = 0x00000800;
export const CLONE_THREAD = 0x00010000;

// <asm/unistd.h>
export const SYS_clone = process.arch === "arm64" ? 220 : 56;

/** "0" when a libc call succeeded, otherwise its errno's name ("EPERM"): what the experiments compare. */
export function outcome(ret: number | bigint): string {
  return Number(ret) < 0 ? errnoName(errno()) : "0";
}

export function chroot(path: string): string {
  return outcome(extra.chroot(cstr(path)));
}

/**
 * The raw clone(2) syscall with no stack, no tls and no tid pointers. Only for flag combinations the
 * kernel refuses before it copies anything: were the call to succeed, the child would run on the
 * caller's stack. Callers make sure a refusal is certain (see test/kernel/probe.ts) before calling.
 */
export function rawCloneRefused(flags: number): string {
  return outcome(libc.syscall(SYS_clone, flags, 0, 0, 0, 0));
}
