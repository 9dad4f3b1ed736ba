// Paths inside the rootfs are resolved by the kernel, never by joining strings.
//
// openat2(2) with RESOLVE_IN_ROOT treats the rootfs fd as "/" for the whole walk: an absolute
// symlink (`/evil -> /etc`) or a `..` chain (`../../../etc`) lands inside the rootfs, not on the
// host. The result is an O_PATH fd, and mounts go onto that fd (move_mount(2)), so a rootfs that
// changes after the lookup cannot redirect the mount. Where a symlink has no business (the targets
// of proc, sysfs, devpts and the /dev tmpfs), RESOLVE_NO_SYMLINKS refuses any.
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { close, mkdirat, openat, openat2 } from "../tape/calls";
import type { Reg, Tape } from "../tape/tape";

export type CreateAs = "dir" | "file" | null;

export interface Lookup {
  /** Where the walk starts: the box's root (RESOLVE_IN_ROOT), or a mount nsrun made (RESOLVE_BENEATH). */
  base: Reg;
  /** RESOLVE_BENEATH below `base` instead of RESOLVE_IN_ROOT at it. */
  beneath?: boolean;
  /** Refuse every symlink on the way. */
  noSymlinks?: boolean;
}

export function resolveFlags(l: Lookup): number {
  return (l.beneath ? F.RESOLVE_BENEATH : F.RESOLVE_IN_ROOT) | F.RESOLVE_NO_MAGICLINKS | (l.noSymlinks ? F.RESOLVE_NO_SYMLINKS : 0);
}

/** The components of an absolute box path: "/dev/pts" -> ["dev", "pts"]. */
export function components(path: string): string[] {
  return path.split("/").filter((c) => c !== "" && c !== ".");
}

/**
 * Tape: open `path` (O_PATH) into `dst`, creating it and its missing parents when asked, as
 * `mkdir -p` would, but one component at a time, each through an fd the kernel resolved inside the
 * root. A component the rootfs already has (a directory, or a symlink that resolves inside the root)
 * is used as it is.
 */
export function openInRoot(t: Tape, l: Lookup, path: string, create: CreateAs, dst: Reg): void {
  const resolve = resolveFlags(l);
  const rel = l.beneath ? components(path).join("/") || "." : path;
  const parts = components(path);
  if (!create || parts.length === 0) {
    openat2(t, l.base, rel, F.O_PATH | (create === "dir" ? F.O_DIRECTORY : 0), resolve, { dst });
    return;
  }
  const done = t.label(`${dst.name}_open`);
  openat2(t, l.base, rel, F.O_PATH | (create === "dir" ? F.O_DIRECTORY : 0), resolve, { dst, ok: [ERRNO.ENOENT] });
  t.jumpIf(dst, "GE", 0, done);
  const walk = t.reg("walk");
  openat2(t, l.base, l.beneath ? "." : "/", F.O_PATH | F.O_DIRECTORY, resolve, { dst: walk });
  parts.forEach((name, i) => {
    const last = i === parts.length - 1;
    if (last && create === "file") {
      const made = t.reg("made");
      const skip = t.label("made_none");
      openat(t, walk, name, F.O_WRONLY | F.O_CREAT | F.O_EXCL | F.O_NOFOLLOW | F.O_NOCTTY, 0o644, { dst: made, ok: [ERRNO.EEXIST] });
      t.jumpIf(made, "LT", 0, skip);
      close(t, made);
      t.place(skip);
    } else {
      mkdirat(t, walk, name, 0o755, { ok: [ERRNO.EEXIST] });
    }
    const prefix = parts.slice(0, i + 1).join("/");
    close(t, walk);
    openat2(t, l.base, l.beneath ? prefix : `/${prefix}`, F.O_PATH | (last && create === "file" ? 0 : F.O_DIRECTORY), resolve, { dst: last ? dst : walk });
  });
  t.place(done);
}
