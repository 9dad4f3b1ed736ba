// Id-mapped binds (a mount's uidMappings/gidMappings, options idmap/ridmap): the bind's files show
// their owners through the mount's maps (mount_setattr(2) MOUNT_ATTR_IDMAP). Two kernel rules shape it:
//
// - The maps are a user namespace's: MOUNT_ATTR_IDMAP takes an fd of one. nsrun makes one per set of
//   maps with a helper process of its own (a tiny tape: clone3 with CLONE_NEWUSER, a sync point while
//   nsrun writes the maps and opens /proc/PID/ns/user, exit), as core/host/idmaps.ts does for boxes.
// - Id-mapping a host filesystem's mount needs CAP_SYS_ADMIN in the initial user namespace, which a
//   container with a user namespace of its own never has. So nsrun (root) makes the detached copy
//   itself, before the container's process exists: open_tree(OPEN_TREE_CLONE), then mount_setattr
//   for the bind's attributes, the id map and its propagation (private, unless it is to be shared).
//   The container's process inherits the fd and only attaches it (emitBind in core/stages/mounts.ts).
//
// An on-disk id is read as an id inside the helper's user namespace: the map line "containerID
// hostID size" shows a file owned by containerID on disk as owned by hostID (as runc and crun do).
import { openSync, constants } from "node:fs";
import * as F from "../../ffi/flags";
import { mountSetattr, openat2, openTree } from "../../ffi/fs";
import { close, pipe } from "../../ffi/io";
import { SyscallError } from "../../ffi/libc";
import { waitExit } from "../../ffi/wait";
import { compileHelper } from "../stages/compile";
import { writeIdMaps } from "../host/idmaps";
import { launch } from "../launch/launch";
import { SYNC } from "../launch/sync";
import type { IdmapPlan, MountOp } from "../stages/mounts";
import type { IdRange } from "../stages/userns";

type Bind = Extract<MountOp, { op: "bind" }>;

/**
 * The binds of `ops` that ask for an id map, copied and id-mapped here: each becomes a bind whose
 * `tree` is the fd of its detached copy. `fds` are those copies, for the container's process to keep.
 */
export async function idmapBinds(ops: MountOp[]): Promise<{ ops: MountOp[]; fds: number[] }> {
  const fds: number[] = [];
  const userns = new Map<string, number>();
  try {
    const out: MountOp[] = [];
    for (const op of ops) {
      if (op.op !== "bind" || !op.idmap) {
        out.push(op);
        continue;
      }
      const key = JSON.stringify([op.idmap.uidMap, op.idmap.gidMap]);
      let ns = userns.get(key);
      if (ns === undefined) {
        ns = await userNamespaceWithMaps(op.idmap.uidMap, op.idmap.gidMap, op.origin);
        userns.set(key, ns);
      }
      const tree = idmappedCopy(op, ns);
      fds.push(tree);
      out.push({ ...op, tree });
    }
    return { ops: out, fds };
  } catch (e) {
    for (const fd of fds) close(fd);
    throw e;
  } finally {
    // Each id-mapped mount holds its user namespace; the fds are no longer needed.
    for (const fd of userns.values()) close(fd);
  }
}

/** A user namespace with these maps, as an fd: made by a helper process that exits once nsrun has it. */
async function userNamespaceWithMaps(uidMap: IdRange[], gidMap: IdRange[], origin: string): Promise<number> {
  const report = pipe(true);
  const [syncRead, syncWrite] = pipe(true);
  const what = `${origin}: make a user namespace for the id map`;
  const t = compileHelper({ kind: "userns", report: report[1], sync: syncRead, what });
  let fd = -1;
  try {
    const run = await launch(t, {
      report,
      syncWrite,
      sync: {
        [SYNC.IDMAP_USERNS]: async (pid: number) => {
          await writeIdMaps({ writer: "root", uidMap, gidMap, setgroups: "allow" }, pid);
          fd = openSync(`/proc/${pid}/ns/user`, constants.O_RDONLY | F.O_CLOEXEC);
        },
      },
    });
    if (run.pid < 0) throw new Error(`${what}: ${run.failure?.message}`);
    await waitExit(run.pidfd);
    close(run.pidfd);
    if (run.failure) throw Object.assign(new Error(run.failure.kind === "host" ? run.failure.message : `${what}: ${run.failure.message}`), { hint: run.failure.hint });
    if (fd < 0) throw new Error(`${origin}: the helper that makes the id map's user namespace did not reach its sync point`);
    return fd;
  } finally {
    close(syncRead);
    close(syncWrite);
  }
}

/** open_tree(2) of the bind's source, then its attributes, id map and propagation: a detached, id-mapped copy. */
function idmappedCopy(op: Bind, userns: number): number {
  const idmap = op.idmap as IdmapPlan;
  const src = openat2(F.AT_FDCWD, op.source, F.O_PATH, F.RESOLVE_NO_SYMLINKS | F.RESOLVE_NO_MAGICLINKS, op.source);
  let tree: number;
  try {
    tree = openTree(src, F.OPEN_TREE_CLONE | F.OPEN_TREE_CLOEXEC | (op.recursive ? F.AT_RECURSIVE : 0), op.source);
  } finally {
    close(src);
  }
  try {
    if (op.attrs) mountSetattr(tree, op.recursive, op.attrs, 0, 0, op.source);
    mountSetattr(tree, idmap.recursive, F.MOUNT_ATTR_IDMAP, 0, userns, op.source);
    // A copy of a shared host mount is a peer of it; private unless the bind is to be shared.
    if (op.propagation?.type !== F.MS_SHARED) mountSetattr(tree, op.recursive, 0, F.MS_PRIVATE, 0, op.source);
    return tree;
  } catch (e) {
    close(tree);
    throw e instanceof SyscallError ? new SyscallError(e.syscall, `${op.origin}: ${e.call}`, e.errno, e.hint) : e;
  }
}
