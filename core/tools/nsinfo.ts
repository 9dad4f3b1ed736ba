// `nsrun ns PID`: the namespaces of one process, compared with nsrun's own, like lsns(8) for one box.
//
// Each /proc/PID/ns/KIND file names a namespace; its inode number identifies it (namespaces(7)).
// User and PID namespaces form trees, which the nsfs ioctls walk upwards (ioctl_ns(2)). All reads go
// through an NsIO, so the walk and the drawing can be tested with a made-up process.
import { readFileSync } from "node:fs";
import { closeNs, nsInode, nsOwnerUid, nsOwnerUserns, nsParent, openNs } from "../../ffi/nsfs";
import { StageError } from "../errors";
import { printable } from "../printable";
import { type IdRange, parseIdMap } from "../stages/userns";

export { parseIdMap };

/** The eight kinds, in the order nsrun creates them (core/stages/namespaces.ts), as /proc/PID/ns names them. */
export const NS_KINDS = ["user", "pid", "mnt", "uts", "ipc", "net", "cgroup", "time"] as const;
export type NsKind = (typeof NS_KINDS)[number];

/** The initial user and PID namespaces have fixed inodes (PROC_USER_INIT_INO, PROC_PID_INIT_INO). */
export const INITIAL_USER_NS = 0xeffffffd;
export const INITIAL_PID_NS = 0xeffffffc;
const MAX_DEPTH = 40; // the kernel nests user and PID namespaces at most 32 deep

/** Every read `inspectNamespaces` makes. Failures throw an error with `code` set to the errno name. */
export interface NsIO {
  readText(path: string): string;
  open(path: string): number;
  inode(fd: number): number;
  parent(fd: number): number;
  ownerUserns(fd: number): number;
  ownerUid(fd: number): number;
  close(fd: number): void;
}

export const linuxNsIO: NsIO = {
  readText: (path) => readFileSync(path, "utf8"),
  open: openNs,
  inode: nsInode,
  parent: nsParent,
  ownerUserns: nsOwnerUserns,
  ownerUid: nsOwnerUid,
  close: closeNs,
};

export interface NsEntry {
  kind: NsKind;
  inode: number;
  /** nsrun's own namespace of this kind (/proc/self/ns/KIND). */
  ours: number;
  new: boolean;
  /** The user namespace that owns it (NS_GET_USERNS); null for user itself or when not visible. */
  ownerUserns: number | null;
}

export interface NsLink {
  inode: number;
  ours: boolean;
  initial: boolean;
  /** For user namespaces: the creator's uid (NS_GET_OWNER_UID). */
  ownerUid: number | null;
}

/** A parent chain, nearest first. `end`: the last one is the initial namespace, or its parent is outside our view (EPERM). */
export interface NsChain {
  parents: NsLink[];
  end: "initial" | "outside-scope" | "error";
  error?: string;
}


export interface NamespaceInfo {
  pid: number;
  command: string;
  namespaces: NsEntry[];
  user: NsChain & { ownerUid: number | null; uidMap: IdRange[]; gidMap: IdRange[] };
  pidNs: NsChain & { nspid: number[] };
}

const code = (e: unknown) => (e as { code?: string }).code ?? String(e);

export function inspectNamespaces(pid: number, procRoot = "/proc", io: NsIO = linuxNsIO): NamespaceInfo {
  if (!Number.isSafeInteger(pid) || pid <= 0) throw new StageError("ns", `not a PID: ${pid}`);
  const dir = `${procRoot}/${pid}`;
  const read = (name: string) => readProc(io, pid, `${dir}/${name}`);
  const status = read("status");
  if (/^State:\s*Z/m.test(status)) throw new StageError("ns", `process ${pid} has exited (a zombie): it has no namespaces left`);
  const cmdline = read("cmdline").split("\0").filter(Boolean).join(" ");
  // The box chose these bytes: escape what a terminal would act on.
  const command = printable(cmdline || `[${/^Name:\s*(.*)$/m.exec(status)?.[1] ?? "?"}]`);
  const nspid = (/^NSpid:\s*(.*)$/m.exec(status)?.[1] ?? "").split(/\s+/).filter(Boolean).map(Number);
  const uidMap = parseIdMap(read("uid_map"));
  const gidMap = parseIdMap(read("gid_map"));

  const namespaces: NsEntry[] = [];
  const unread: NsChain = { parents: [], end: "error", error: "not read" };
  let userChain = unread;
  let pidChain = unread;
  let ownerUid: number | null = null;
  for (const kind of NS_KINDS) {
    const ours = withNs(io, pid, `${procRoot}/self/ns/${kind}`, (fd) => io.inode(fd));
    withNs(io, pid, `${dir}/ns/${kind}`, (fd) => {
      const inode = io.inode(fd);
      const ownerUserns = kind === "user" ? null : attempt(() => withFd(io, io.ownerUserns(fd), (o) => io.inode(o)));
      namespaces.push({ kind, inode, ours, new: inode !== ours, ownerUserns });
      if (kind === "user") {
        ownerUid = attempt(() => io.ownerUid(fd));
        userChain = walkParents(io, fd, kind, ours);
      }
      if (kind === "pid") pidChain = walkParents(io, fd, kind, ours);
    });
  }
  return { pid, command, namespaces, user: { ownerUid, ...userChain, uidMap, gidMap }, pidNs: { nspid, ...pidChain } };
}

function readProc(io: NsIO, pid: number, path: string): string {
  try {
    return io.readText(path);
  } catch (e) {
    if (code(e) === "ENOENT" || code(e) === "ESRCH") throw new StageError("ns", `no process ${pid}`);
    throw new StageError("ns", `cannot read ${path}: ${code(e)}`);
  }
}

/** Opens a namespace file, runs `fn` on it and closes it; turns open's errno into a user-facing error. */
function withNs<T>(io: NsIO, pid: number, path: string, fn: (fd: number) => T): T {
  let fd: number;
  try {
    fd = io.open(path);
  } catch (e) {
    const c = code(e);
    if (c === "ENOENT" || c === "ESRCH") throw new StageError("ns", `no process ${pid}`);
    const hint =
      c === "EACCES" || c === "EPERM"
        ? "reading another process's namespaces needs ptrace read access to it: run nsrun ns as the same user as the process, or as root"
        : undefined;
    throw new StageError("ns", `cannot open ${path}: ${c}${describe(e)}`, hint);
  }
  return withFd(io, fd, fn);
}

function withFd<T>(io: NsIO, fd: number, fn: (fd: number) => T): T {
  try {
    return fn(fd);
  } finally {
    io.close(fd);
  }
}

function describe(e: unknown): string {
  const c = code(e);
  return c === "EACCES" ? " (Permission denied)" : c === "EPERM" ? " (Operation not permitted)" : "";
}

function attempt<T>(fn: () => T): T | null {
  try {
    return fn();
  } catch {
    return null;
  }
}

/** NS_GET_PARENT until the kernel says EPERM: at the initial namespace, or above the caller's own. */
function walkParents(io: NsIO, fd: number, kind: "user" | "pid", ours: number): NsChain {
  const initial = kind === "user" ? INITIAL_USER_NS : INITIAL_PID_NS;
  const parents: NsLink[] = [];
  let cur = fd;
  try {
    for (let depth = 0; depth < MAX_DEPTH; depth++) {
      let next: number;
      try {
        next = io.parent(cur);
      } catch (e) {
        if (code(e) !== "EPERM") return { parents, end: "error", error: code(e) };
        return { parents, end: io.inode(cur) === initial ? "initial" : "outside-scope" };
      }
      if (cur !== fd) io.close(cur);
      cur = next;
      const inode = io.inode(cur);
      const ownerUid = kind === "user" ? attempt(() => io.ownerUid(cur)) : null;
      parents.push({ inode, ours: inode === ours, initial: inode === initial, ownerUid });
    }
    return { parents, end: "error", error: `deeper than ${MAX_DEPTH}` };
  } finally {
    if (cur !== fd) io.close(cur);
  }
}

/** /proc/PID/uid_map or gid_map: lines of "inside outside count", as the reader's user namespace sees them. */

const showMap = (m: IdRange[]) => (m.length ? m.map((r) => `${r.inside} ${r.outside} ${r.count}`).join(", ") : "(none)");

function showChain(chain: NsChain): string {
  const tags = (l: { ours: boolean; initial: boolean }) => {
    const t = [l.ours && "nsrun's", l.initial && "initial"].filter(Boolean);
    return t.length ? ` (${t.join(", ")})` : "";
  };
  const beyond = chain.end === "outside-scope" ? "outside nsrun's view" : chain.end === "error" ? `not readable: ${chain.error}` : "";
  if (!chain.parents.length) {
    if (chain.end === "initial") return "initial";
    return `parent ${beyond}`;
  }
  const links = chain.parents.map((l) => `${l.inode}${tags(l)}`);
  if (beyond) links.push(beyond);
  return `${chain.parents.length > 1 ? "parents" : "parent"} ${links.join(" → ")}`;
}

/** The tree drawn in the terminal. */
export function renderTree(info: NamespaceInfo): string {
  const out = [`pid ${info.pid} (${info.command})`];
  const userNs = info.namespaces.find((n) => n.kind === "user");
  info.namespaces.forEach((ns, i) => {
    const last = i === info.namespaces.length - 1;
    const details: string[] = [];
    const more: string[] = [];
    if (ns.kind === "user") {
      details.push(`${info.user.ownerUid === null ? "" : `owner uid ${info.user.ownerUid}, `}${showChain(info.user)}`);
      more.push(`uid_map: ${showMap(info.user.uidMap)}   gid_map: ${showMap(info.user.gidMap)}`);
    } else if (ns.kind === "pid") {
      details.push(`NSpid: ${info.pidNs.nspid.join(" ") || "?"}`, showChain(info.pidNs));
    }
    if (ns.ownerUserns !== null && ns.ownerUserns !== userNs?.inode)
      details.push(`owned by user ${ns.ownerUserns}${ns.ownerUserns === userNs?.ours ? " (nsrun's)" : ""}`);
    const head = `${ns.kind.padEnd(7)}${String(ns.inode).padEnd(12)}${ns.new ? "new   " : "shared"}`;
    out.push(`${last ? "└─ " : "├─ "}${head}  ${details.join("   ")}`.trimEnd());
    for (const line of more) out.push(`${last ? "   " : "│  "}${" ".repeat(7)}${line}`);
  });
  return `${out.join("\n")}\n`;
}
