// Stage: give the new user namespace its id maps (user_namespaces(7), "User and group ID mappings").
//
// Who may write them decides what they can say:
//   - the box's first process itself ("self"): an unprivileged writer may map exactly one id, its
//     own ("0 <uid> 1"), and must write "deny" to setgroups before gid_map (since Linux 3.19, so that
//     it cannot drop a group that a file's permissions deny it);
//   - nsrun from outside, at a sync point while the process waits: as root directly ("root"), any
//     ranges; as an ordinary user through the setuid helpers newuidmap(1)/newgidmap(1) from the
//     Debian/Ubuntu package uidmap ("newuidmap"), the ranges /etc/subuid and /etc/subgid grant.
import { accessSync, constants, readFileSync } from "node:fs";
import * as F from "../../ffi/flags";
import { close, openat, setgroups, setresgid, setresuid, syncWithHost, writeText } from "../tape/calls";
import type { Tape } from "../tape/tape";
import { SYNC } from "../launch/sync";

/** One line of a uid_map or gid_map: ids inside..inside+count map to outside..outside+count. */
export interface IdRange {
  inside: number;
  outside: number;
  count: number;
}

export interface IdMapPlan {
  writer: "self" | "root" | "newuidmap";
  uidMap: IdRange[];
  gidMap: IdRange[];
  /** Written to /proc/PID/setgroups: "deny" is required of a self-writer; ranges keep setgroups(2) usable. */
  setgroups: "deny" | "allow";
}

/** The range root's boxes get without an entry for root in /etc/subuid: above systemd-nspawn's "pick" range. */
export const ROOT_DEFAULT_RANGE = { start: 0x70000000, count: 65536 };

/** "uid_map" text: one "inside outside count" line per range. */
export function formatIdMap(ranges: IdRange[]): string {
  return ranges.map((r) => `${r.inside} ${r.outside} ${r.count}\n`).join("");
}

export function parseIdMap(text: string): IdRange[] {
  return text
    .split("\n")
    .map((l) => l.trim().split(/\s+/).map(Number))
    .filter((f) => f.length === 3 && f.every(Number.isFinite))
    .map(([inside, outside, count]) => ({ inside, outside, count }));
}

/** Whether `id` (inside) falls in one of the ranges. */
export function idMapped(ranges: IdRange[], id: number): boolean {
  return ranges.some((r) => id >= r.inside && id < r.inside + r.count);
}

/** /etc/subuid or /etc/subgid: the "name:start:count" (or "uid:start:count") lines of one user. */
export function subordinateRanges(text: string, user: { name: string; id: number }): Array<{ start: number; count: number }> {
  const out: Array<{ start: number; count: number }> = [];
  for (const line of text.split("\n")) {
    const [who, start, count] = line.trim().split(":");
    if (!who || (who !== user.name && who !== String(user.id))) continue;
    const s = Number(start);
    const c = Number(count);
    if (Number.isSafeInteger(s) && Number.isSafeInteger(c) && c > 0) out.push({ start: s, count: c });
  }
  return out;
}

/** What planning needs to know about the caller's subordinate ids (read by readSubordinateIds). */
export interface SubordinateIds {
  uids: Array<{ start: number; count: number }>;
  gids: Array<{ start: number; count: number }>;
  /** newuidmap and newgidmap are installed (and so may write ranges for an ordinary user). */
  helpers: boolean;
}

/** The name /etc/passwd gives `uid`, or null. */
export function passwdName(passwd: string, uid: number): string | null {
  const entry = passwd.split("\n").find((l) => l.split(":")[2] === String(uid));
  return entry ? entry.split(":")[0] : null;
}

/** Where readSubordinateIds looks for newuidmap and newgidmap (shadow's uidmap package installs them in /usr/bin). */
export const SUBID_HELPERS = ["newuidmap", "newgidmap"].flatMap((name) => ["/usr/bin", "/bin", "/usr/sbin", "/sbin"].map((dir) => `${dir}/${name}`));

export function readSubordinateIds(uid: number, root = ""): SubordinateIds {
  const read = (p: string) => {
    try {
      return readFileSync(`${root}${p}`, "utf8");
    } catch {
      return "";
    }
  };
  const user = { name: passwdName(read("/etc/passwd"), uid) ?? String(uid), uid };
  const installed = (name: string) =>
    SUBID_HELPERS.filter((path) => path.endsWith(`/${name}`)).some((path) => {
      try {
        accessSync(`${root}${path}`, constants.X_OK);
        return true;
      } catch {
        return false;
      }
    });
  return {
    uids: subordinateRanges(read("/etc/subuid"), { name: user.name, id: user.uid }),
    gids: subordinateRanges(read("/etc/subgid"), { name: user.name, id: user.uid }),
    helpers: installed("newuidmap") && installed("newgidmap"),
  };
}

export type IdMapMode = "auto" | "single";

/** The kernel takes at most 340 lines in a uid_map or gid_map (user_namespaces(7), since Linux 4.15). */
export const MAX_MAP_LINES = 340;

/**
 * Subordinate ranges laid end to end from inside id `first` (podman's layout): every range, in file
 * order, skipping one that repeats or overlaps an id already mapped (the kernel refuses overlapping
 * lines with EINVAL), at most MAX_MAP_LINES lines with `taken`, and below 2^32-1 inside.
 */
export function consecutiveRanges(ranges: Array<{ start: number; count: number }>, first: number, taken: IdRange[] = []): IdRange[] {
  const out: IdRange[] = [];
  let inside = first;
  const overlaps = (start: number, count: number) => [...taken, ...out].some((r) => start < r.outside + r.count && r.outside < start + count);
  for (const { start, count } of ranges) {
    if (taken.length + out.length >= MAX_MAP_LINES || inside >= 0xfffffffe) break;
    if (overlaps(start, count) || start + count > 0xffffffff) continue;
    const n = Math.min(count, 0xfffffffe - inside);
    out.push({ inside, outside: start, count: n });
    inside += n;
  }
  return out;
}

/**
 * The box's maps. Root: box ids 0.. are every range of root's /etc/subuid entries, end to end, or
 * ROOT_DEFAULT_RANGE, never host uid 0. An ordinary user, "auto": container root is the user, and
 * 1.. every subordinate range end to end (podman's layout), when both files grant ranges and the
 * helpers are installed; otherwise, and with "single", the user alone as 0.
 */
export function planIdMaps(caller: { uid: number; gid: number }, sub: SubordinateIds, mode: IdMapMode): IdMapPlan {
  if (caller.uid === 0) {
    const uidMap = consecutiveRanges(sub.uids, 0);
    const gidMap = consecutiveRanges(sub.gids, 0);
    const fallback = [{ inside: 0, outside: ROOT_DEFAULT_RANGE.start, count: ROOT_DEFAULT_RANGE.count }];
    return { writer: "root", uidMap: uidMap.length ? uidMap : fallback, gidMap: gidMap.length ? gidMap : fallback, setgroups: "allow" };
  }
  const single: IdMapPlan = { writer: "self", uidMap: [{ inside: 0, outside: caller.uid, count: 1 }], gidMap: [{ inside: 0, outside: caller.gid, count: 1 }], setgroups: "deny" };
  if (mode === "single" || !sub.helpers || !sub.uids.length || !sub.gids.length) return single;
  const own = (id: number): IdRange => ({ inside: 0, outside: id, count: 1 });
  const uidRest = consecutiveRanges(sub.uids, 1, [own(caller.uid)]);
  const gidRest = consecutiveRanges(sub.gids, 1, [own(caller.gid)]);
  if (!uidRest.length || !gidRest.length) return single;
  return { writer: "newuidmap", uidMap: [own(caller.uid), ...uidRest], gidMap: [own(caller.gid), ...gidRest], setgroups: "allow" };
}

/** The writes of a self-writer, in the order the kernel requires. */
export function idMapWrites(plan: IdMapPlan): Array<[path: string, text: string]> {
  return [
    ["/proc/self/setgroups", `${plan.setgroups}\n`],
    ["/proc/self/uid_map", formatIdMap(plan.uidMap)],
    ["/proc/self/gid_map", formatIdMap(plan.gidMap)],
  ];
}

/** The sync point at which nsrun writes the maps from outside. */
export const SYNC_ID_MAPS = SYNC.ID_MAPS;

/**
 * Tape: the maps. A self-writer writes its own. Otherwise the process waits while nsrun writes them,
 * then becomes root of the namespace at once (setgroups, setresgid, setresuid): until then it acts
 * with the ids it was created with, which for a root caller are the host's own root.
 */
export function emitIdMaps(t: Tape, plan: IdMapPlan, fds: { report: number; sync: number | null }): void {
  if (plan.writer === "self") {
    const file = t.reg("file");
    for (const [path, text] of idMapWrites(plan)) {
      t.doing(`write ${JSON.stringify(text.trimEnd())} to ${path}`, WRITE_HINTS);
      openat(t, F.AT_FDCWD, path, F.O_WRONLY, 0, { dst: file });
      writeText(t, file, text);
      close(t, file);
    }
    return;
  }
  if (fds.sync === null) throw new Error("compile: id maps written from outside need the sync pipe");
  syncWithHost(t, fds.report, fds.sync, SYNC_ID_MAPS, `wait while nsrun writes the id maps (${plan.writer === "root" ? "as root" : "with newuidmap and newgidmap"})`);
  t.doing("become root of the user namespace");
  setgroups(t, []);
  setresgid(t, 0);
  setresuid(t, 0);
}

const WRITE_HINTS = {
  EPERM:
    "writing uid_map/gid_map was refused; on Ubuntu 23.10+ this is AppArmor's `kernel.apparmor_restrict_unprivileged_userns`: allow nsrun with an AppArmor profile, or set that sysctl to 0",
};

/**
 * A hint for an ordinary user whose box does not map the owner of its rootfs (a tree made by root,
 * with mmdebstrap or debootstrap, say): inside, every file shows as nobody and every write fails
 * with EACCES, which says nothing about why. null when the owner is mapped, or for root.
 */
export function unmappedRootfsHint(rootfs: string, owner: { uid: number; gid: number }, caller: { uid: number; gid: number }, map: IdMapPlan | null): string | null {
  if (caller.uid === 0 || map === null) return null;
  const outside = (ranges: IdRange[], id: number) => ranges.some((r) => id >= r.outside && id < r.outside + r.count);
  if (outside(map.uidMap, owner.uid)) return null;
  return (
    `the rootfs ${JSON.stringify(rootfs)} belongs to uid ${owner.uid}, which this rootless box does not map: inside, its files show as nobody (65534) and writes fail with EACCES. ` +
    `Make it yours (sudo chown -R ${caller.uid}:${caller.gid} ${JSON.stringify(rootfs)}: your files are root's inside), or import it as an image ` +
    "(a tarball of it, nsrun image import), which keeps its owners through your subordinate ids; --readonly says you only read it"
  );
}
