// libc calls that only test/kernel/ needs: the experiments that show the kernel's namespace rules.
// Each returns "0" or the errno's name. It has its own small dlopen, so that ffi/libc.ts keeps
// exactly the symbols nsrun itself uses.
import { dlopen, FFIType } from "bun:ffi";
import { cstr, errno, errnoName, libc } from "../../ffi/libc";
import { syscallTable } from "../../ffi/syscalls";

const { i32, ptr } = FFIType;

export const extra = dlopen("libc.so.6", {
  chroot: { args: [ptr], returns: i32 },
  getpid: { args: [], returns: i32 },
  getppid: { args: [], returns: i32 },
  unshare: { args: [i32], returns: i32 },
  mount: { args: [ptr, ptr, ptr, FFIType.u64, ptr], returns: i32 },
  umount2: { args: [ptr, i32], returns: i32 },
  sethostname: { args: [ptr, FFIType.u64], returns: i32 },
  setresuid: { args: [FFIType.u32, FFIType.u32, FFIType.u32], returns: i32 },
  prlimit: { args: [i32, i32, ptr, ptr], returns: i32 },
}).symbols;

const orNull = (s: string | null) => (s === null ? null : cstr(s));

export const unshare = (flags: number) => outcome(extra.unshare(flags));
export const mount = (source: string | null, target: string, fstype: string | null, flags: number, data: string | null) =>
  outcome(extra.mount(orNull(source), cstr(target), orNull(fstype), flags, orNull(data)));
export const umount2 = (target: string, flags: number) => outcome(extra.umount2(cstr(target), flags));
export const sethostname = (name: string) => outcome(extra.sethostname(Buffer.from(name), Buffer.byteLength(name)));
export const setresuid = (uid: number) => outcome(extra.setresuid(uid, uid, uid));
export const setrlimit = (resource: number, soft: number, hard: number) => outcome(extra.prlimit(0, resource, new BigUint64Array([BigInt(soft), BigInt(hard)]), null));

// <linux/sched.h>: the clone(2) flags that make a thread (what pthread_create passes).
export const CLONE_VM = 0x00000100;
export const CLONE_FS = 0x00000200;
export const CLONE_FILES = 0x00000400;
export const CLONE_SIGHAND = 0x00000800;
export const CLONE_THREAD = 0x00010000;

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
  return outcome(libc.syscall(syscallTable().clone, flags, 0, 0, 0, 0));
}

const RENAME_EXCHANGE = 2;
const renameLib = dlopen("libc.so.6", { renameat2: { args: [i32, ptr, i32, ptr, FFIType.u32], returns: i32 } }).symbols;

/** renameat2(RENAME_EXCHANGE): swap two paths atomically (what an attacker flips a path component with). */
export const exchange = (a: string, b: string) => outcome(renameLib.renameat2(-100, cstr(a), -100, cstr(b), RENAME_EXCHANGE));
