// errno values (<asm-generic/errno-base.h>, <asm-generic/errno.h>): the same on x86-64 and arm64.
// The one place nsrun names them; errnoName() turns a number back into its name.

export const ERRNO = {
  EPERM: 1,
  ENOENT: 2,
  ESRCH: 3,
  EINTR: 4,
  EIO: 5,
  ENXIO: 6,
  E2BIG: 7,
  ENOEXEC: 8,
  EBADF: 9,
  ECHILD: 10,
  EAGAIN: 11,
  ENOMEM: 12,
  EACCES: 13,
  EFAULT: 14,
  EBUSY: 16,
  EEXIST: 17,
  EXDEV: 18,
  ENODEV: 19,
  ENOTDIR: 20,
  EISDIR: 21,
  EINVAL: 22,
  ENFILE: 23,
  EMFILE: 24,
  ENOTTY: 25,
  ETXTBSY: 26,
  EFBIG: 27,
  ENOSPC: 28,
  EROFS: 30,
  EMLINK: 31,
  EPIPE: 32,
  ERANGE: 34,
  ENAMETOOLONG: 36,
  ENOSYS: 38,
  ENOTEMPTY: 39,
  ELOOP: 40,
  ENODATA: 61,
  EOVERFLOW: 75,
  EUSERS: 87,
  EOPNOTSUPP: 95,
  ECONNREFUSED: 111,
} as const;

export type ErrnoName = keyof typeof ERRNO;

// Made on first use: only an error needs it, and building it at load costs about 0.2 ms of every
// start (the first Object.entries, map and Map from a list in a process).
let names: Map<number, string> | null = null;

/** The errno's name ("ENOENT"): from the table above, else from Node's list, else "errno N". */
export function errnoName(code: number): string {
  names ??= new Map<number, string>(Object.entries(ERRNO).map(([k, v]) => [v, k]));
  const known = names.get(code);
  if (known) return known;
  try {
    // node:util costs about a millisecond to load: only for an errno the table above does not name.
    return (require("node:util") as typeof import("node:util")).getSystemErrorName(-code);
  } catch {
    return `errno ${code}`;
  }
}
