// One emitter per syscall a tape makes: each puts the arguments into the tape (strings, structs)
// and spells the call the way --trace prints it, flags as names and paths quoted, like strace.
import { ERRNO } from "../../ffi/errno";
import { REPORT } from "../../ffi/executor/protocol";
import * as F from "../../ffi/flags";
import { type Arg, fdText, type Ptr, type Reg, type Tape } from "./tape";

export type Fd = Reg | number;
type Opts = { dst?: Reg; ok?: number[] };

const q = (s: string) => JSON.stringify(s);
const names = (v: number, table: Record<string, number>) => F.flagNames(v, table);

function u64s(values: Array<number | bigint>): Uint8Array {
  const b = new BigUint64Array(values.map((v) => BigInt.asUintN(64, BigInt(v))));
  return new Uint8Array(b.buffer);
}

export function close(t: Tape, fd: Reg): void {
  t.sys("close", [fd], () => `close(${fd.name})`);
}

/** close(2) of an fd the host handed over, by number. */
export function closeFd(t: Tape, fd: number): void {
  t.sys("close", [fd], () => `close(${fd})`);
}

/** close_range(2): close [first, last], or with CLOSE_RANGE_CLOEXEC mark them close-on-exec. */
export function closeRange(t: Tape, first: number, last: number, flags: number): void {
  const shownLast = last >= 0xffffffff ? "~0U" : String(last);
  t.sys("close_range", [first, last, flags], () => `close_range(${first}, ${shownLast}, ${flags ? "CLOSE_RANGE_CLOEXEC" : "0"})`);
}

export function openat(t: Tape, dir: Fd, path: string, flags: number, mode: number, opts: Opts = {}): void {
  t.sys("openat", [dir, t.str(path), flags | F.O_CLOEXEC, mode], () => `openat(${fdText(dir)}, ${q(path)}, ${names(flags | F.O_CLOEXEC, F.O_FLAGS)}${mode ? `, 0${mode.toString(8)}` : ""})`, opts);
}

/**
 * openat2(2): resolve `path` below `dir` with RESOLVE_* rules; O_CLOEXEC always. Scoped to a root
 * (RESOLVE_IN_ROOT, RESOLVE_BENEATH), EAGAIN runs it again: a mount or rename anywhere on the host
 * raced its walk of "..", which on a busy host happens (see protocol.h NSRUN_OP_RETRY_EAGAIN).
 */
export function openat2(t: Tape, dir: Fd, path: string, flags: number, resolve: number, opts: Opts = {}): void {
  const how = t.bytes(u64s([flags | F.O_CLOEXEC, 0, resolve]), "how");
  t.sys(
    "openat2",
    [dir, t.str(path), how, 24],
    () => `openat2(${fdText(dir)}, ${q(path)}, {${names(flags | F.O_CLOEXEC, F.O_FLAGS)}, ${names(resolve, F.RESOLVE_FLAGS)}})`,
    { ...opts, retryEagain: (resolve & (F.RESOLVE_IN_ROOT | F.RESOLVE_BENEATH)) !== 0 },
  );
}

export function write(t: Tape, fd: Fd, data: Uint8Array, shown: string, opts: Opts = {}): void {
  t.sys("write", [fd, t.bytes(data, shown), data.length], () => `write(${fdText(fd)}, ${shown}, ${data.length})`, opts);
}

export function writeText(t: Tape, fd: Fd, text: string): void {
  write(t, fd, new TextEncoder().encode(text), q(text));
}

export function read(t: Tape, fd: Fd, into: Ptr, size: number, opts: Opts = {}): void {
  t.sys("read", [fd, into, size], () => `read(${fdText(fd)}, ${into.show}, ${size})`, opts);
}

export function mount(t: Tape, source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
  const s = (v: string | null) => (v === null ? 0 : t.str(v));
  const show = (v: string | null) => (v === null ? "NULL" : q(v));
  t.sys("mount", [s(source), t.str(target), s(fstype), flags, s(data)], () => `mount(${show(source)}, ${q(target)}, ${show(fstype)}, ${names(flags, F.MS_FLAGS)}, ${show(data)})`);
}

/** umount2(2) of a path, or of the mount an fd path (a Ptr from Tape.fdpath) names. */
export function umount2(t: Tape, target: string | Ptr, flags: number): void {
  const p = typeof target === "string" ? t.str(target) : target;
  t.sys("umount2", [p, flags], () => `umount2(${typeof target === "string" ? q(target) : target.show}, ${flags === F.MNT_DETACH ? "MNT_DETACH" : flags})`);
}

/** open_tree(2): with OPEN_TREE_CLONE, a detached copy of the mount (tree) at dir/path. */
export function openTree(t: Tape, dir: Fd, path: string, flags: number, opts: Opts = {}): void {
  t.sys("open_tree", [dir, t.str(path), flags], () => `open_tree(${fdText(dir)}, ${q(path)}, ${names(flags, F.AT_FLAGS)})`, opts);
}

/** move_mount(2) of a detached mount onto the directory or file that `to` is open on. */
export function moveMount(t: Tape, from: Reg, to: Reg, opts: Opts = {}): void {
  const flags = F.MOVE_MOUNT_F_EMPTY_PATH | F.MOVE_MOUNT_T_EMPTY_PATH;
  t.sys("move_mount", [from, t.str(""), to, t.str(""), flags], () => `move_mount(${from.name}, "", ${to.name}, "", MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH)`, opts);
}

export function fsopen(t: Tape, fstype: string, dst: Reg, opts: Opts = {}): void {
  t.sys("fsopen", [t.str(fstype), F.FSOPEN_CLOEXEC], () => `fsopen(${q(fstype)}, FSOPEN_CLOEXEC)`, { dst, ...opts });
}

/** fsconfig(2): a "key=value" option, or a flag option when value is null. */
export function fsconfigSet(t: Tape, ctx: Reg, key: string, value: string | Ptr | null): void {
  if (value === null) {
    t.sys("fsconfig", [ctx, F.FSCONFIG_SET_FLAG, t.str(key), 0, 0], () => `fsconfig(${ctx.name}, FSCONFIG_SET_FLAG, ${q(key)}, NULL, 0)`);
    return;
  }
  const v = typeof value === "string" ? t.str(value) : value;
  t.sys("fsconfig", [ctx, F.FSCONFIG_SET_STRING, t.str(key), v, 0], () => `fsconfig(${ctx.name}, FSCONFIG_SET_STRING, ${q(key)}, ${v.show}, 0)`);
}

export function fsconfigCreate(t: Tape, ctx: Reg, opts: Opts = {}): void {
  t.sys("fsconfig", [ctx, F.FSCONFIG_CMD_CREATE, 0, 0, 0], () => `fsconfig(${ctx.name}, FSCONFIG_CMD_CREATE, NULL, NULL, 0)`, opts);
}

export function fsmount(t: Tape, ctx: Reg, attrs: number, opts: Opts = {}): void {
  t.sys("fsmount", [ctx, F.FSMOUNT_CLOEXEC, attrs], () => `fsmount(${ctx.name}, FSMOUNT_CLOEXEC, ${names(attrs, F.MOUNT_ATTR_FLAGS)})`, opts);
}

/** A tmpfs of `mode`, made and mounted detached (fsopen, fsconfig, fsmount, with `ctx` as scratch): `dst` holds its mount. */
export function detachedTmpfs(t: Tape, ctx: Reg, mode: string, attrs: number, dst: Reg): void {
  fsopen(t, "tmpfs", ctx);
  fsconfigSet(t, ctx, "mode", mode);
  fsconfigCreate(t, ctx);
  fsmount(t, ctx, attrs, { dst });
  close(t, ctx);
}

/**
 * mount_setattr(2) on the mount (tree, with AT_RECURSIVE) that `fd` is open on. `more`: a
 * propagation type (MS_SHARED, MS_SLAVE, MS_PRIVATE, MS_UNBINDABLE), and with MOUNT_ATTR_IDMAP the
 * user namespace whose maps the mount takes (an fd number the tape holds, in a register).
 */
export function mountSetattr(t: Tape, fd: Reg, recursive: boolean, set: number, more: { propagation?: number; userns?: Reg } = {}): void {
  const atFlags = F.AT_EMPTY_PATH | (recursive ? F.AT_RECURSIVE : 0);
  const propagation = more.propagation ?? 0;
  const shown = [
    ...(set || !propagation ? [`attr_set=${names(set, F.MOUNT_ATTR_FLAGS)}`] : []),
    ...(propagation ? [`propagation=${names(propagation, F.MS_FLAGS)}`] : []),
    ...(more.userns ? [`userns_fd=${more.userns.name}`] : []),
  ].join(", ");
  // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
  const attr = t.bytes(u64s([set, 0, propagation, 0]), `{${shown}}`);
  if (more.userns) t.store(more.userns, t.field(attr, 24, "attr.userns_fd"), 8);
  t.sys("mount_setattr", [fd, t.str(""), atFlags, attr, 32], () => `mount_setattr(${fd.name}, "", ${names(atFlags, F.AT_FLAGS)}, {${shown}})`);
}

export function mkdirat(t: Tape, dir: Fd, name: string, mode: number, opts: Opts = {}): void {
  t.sys("mkdirat", [dir, t.str(name), mode], () => `mkdirat(${fdText(dir)}, ${q(name)}, 0${mode.toString(8)})`, opts);
}

export function symlinkat(t: Tape, linkTo: string, dir: Fd, name: string, opts: Opts = {}): void {
  t.sys("symlinkat", [t.str(linkTo), dir, t.str(name)], () => `symlinkat(${q(linkTo)}, ${fdText(dir)}, ${q(name)})`, opts);
}

/** fchownat(2); with AT_EMPTY_PATH and "" it changes the file `dir` is open on (an O_PATH fd of a symlink: the symlink). */
export function fchownat(t: Tape, dir: Fd, path: string, uid: number, gid: number, flags: number, opts: Opts = {}): void {
  t.sys("fchownat", [dir, t.str(path), uid, gid, flags], () => `fchownat(${fdText(dir)}, ${q(path)}, ${uid}, ${gid}, ${names(flags, F.AT_FLAGS)})`, opts);
}

/** mknodat(2); `dev` as makedev(3) packs major and minor. */
export function mknodat(t: Tape, dir: Fd, path: string, mode: number, major: number, minor: number, opts: Opts = {}): void {
  // Arithmetic, not bitwise: the high bits are above 2^32.
  const dev = (minor % 256) + (major % 4096) * 256 + Math.floor(minor / 256) * 2 ** 20 + Math.floor(major / 4096) * 2 ** 44;
  const type = (mode & 0o170000) === F.S_IFCHR ? "S_IFCHR" : (mode & 0o170000) === F.S_IFBLK ? "S_IFBLK" : "S_IFIFO";
  t.sys("mknodat", [dir, t.str(path), mode, dev], () => `mknodat(${fdText(dir)}, ${q(path)}, ${type}|0${(mode & 0o7777).toString(8)}, makedev(${major}, ${minor}))`, opts);
}

/** fchmodat(2) of a path, or of a Ptr from Tape.fdpath ("/proc/self/fd/N": the file an fd is open on, O_PATH too). */
export function fchmodat(t: Tape, dir: Fd, path: string | Ptr, mode: number, opts: Opts = {}): void {
  const p = typeof path === "string" ? t.str(path) : path;
  t.sys("fchmodat", [dir, p, mode, 0], () => `fchmodat(${fdText(dir)}, ${p.show}, 0${mode.toString(8)})`, opts);
}

/** setxattr(2) of a path (following symlinks), or of a Ptr from Tape.fdpath. */
export function setxattr(t: Tape, path: string | Ptr, name: string, value: Uint8Array, flags: number, opts: Opts = {}): void {
  const p = typeof path === "string" ? t.str(path) : path;
  const shown = `[${value.length} bytes]`;
  t.sys("setxattr", [p, t.str(name), t.bytes(value, shown), value.length, flags], () => `setxattr(${p.show}, ${q(name)}, ${shown}, ${value.length}, ${names(flags, F.XATTR_FLAGS)})`, opts);
}

export function sethostname(t: Tape, name: string): void {
  const b = new TextEncoder().encode(name);
  t.sys("sethostname", [t.bytes(b, q(name)), b.length], () => `sethostname(${q(name)}, ${b.length})`);
}

export function socket(t: Tape, domain: number, type: number, dst: Reg): void {
  t.sys("socket", [domain, type | F.SOCK_CLOEXEC, 0], () => `socket(AF_INET, SOCK_DGRAM|SOCK_CLOEXEC, 0)`, { dst });
}

export function ioctl(t: Tape, fd: Reg, request: number, arg: Ptr, shown: string): void {
  t.sys("ioctl", [fd, request, arg], () => `ioctl(${fd.name}, ${shown})`);
}

/** ioctl(2) whose argument is a pointer into the tape. */
export function ioctlPtr(t: Tape, fd: Reg, request: number, arg: Ptr, shown: string): void {
  t.sys("ioctl", [fd, request, arg], () => `ioctl(${fd.name}, ${shown})`);
}

/** ioctl(2) whose argument is a plain integer; the result, if kept, into `dst`. */
export function ioctlInt(t: Tape, fd: Reg, request: number, arg: number, shown: string, dst?: Reg): void {
  t.sys("ioctl", [fd, request, arg], () => `ioctl(${fd.name}, ${shown})`, { dst });
}

/** dup3(2) onto a fixed fd number (0-2 for the box's stdio). */
export function dup3(t: Tape, fd: Fd, to: number): void {
  t.sys("dup3", [fd, to, 0], () => `dup3(${fdText(fd)}, ${to}, 0)`);
}

export function fchdir(t: Tape, fd: Fd): void {
  t.sys("fchdir", [fd], () => `fchdir(${fdText(fd)})`);
}

export function chdir(t: Tape, path: string, opts: Opts = {}): void {
  t.sys("chdir", [t.str(path)], () => `chdir(${q(path)})`, opts);
}

export function pivotRoot(t: Tape, newRoot: string, putOld: string): void {
  t.sys("pivot_root", [t.str(newRoot), t.str(putOld)], () => `pivot_root(${q(newRoot)}, ${q(putOld)})`);
}

export function getcwd(t: Tape, into: Ptr, size: number): void {
  t.sys("getcwd", [into, size], () => `getcwd(${into.show}, ${size})`);
}

export function prctl(t: Tape, option: number, arg2: number, shown: string, opts: Opts = {}): void {
  t.sys("prctl", [option, arg2, 0, 0, 0], () => `prctl(${F.PR_NAMES[option] ?? option}, ${shown})`, opts);
}

/** prlimit64(2) on this process; -1 is RLIM_INFINITY. */
export function setrlimit(t: Tape, resource: number, name: string, soft: number, hard: number): void {
  const v = (n: number) => (n < 0 ? 0xffffffffffffffffn : BigInt(n));
  const show = (n: number) => (n < 0 ? "RLIM_INFINITY" : String(n));
  const lim = t.bytes(u64s([v(soft), v(hard)]), `{${show(soft)}, ${show(hard)}}`);
  t.sys("prlimit64", [0, resource, lim, 0], () => `prlimit64(0, RLIMIT_${name.toUpperCase()}, {${show(soft)}, ${show(hard)}}, NULL)`);
}

export function setsid(t: Tape): void {
  t.sys("setsid", [], () => "setsid()");
}

export function setgroups(t: Tape, groups: number[]): void {
  const list = t.bytes(new Uint8Array(new Uint32Array(groups.length ? groups : [0]).buffer), `[${groups.join(", ")}]`);
  t.sys("setgroups", [groups.length, groups.length ? list : 0], () => `setgroups(${groups.length}, [${groups.join(", ")}])`);
}

export function setresgid(t: Tape, gid: number): void {
  t.sys("setresgid", [gid, gid, gid], () => `setresgid(${gid}, ${gid}, ${gid})`);
}

export function setresuid(t: Tape, uid: number): void {
  t.sys("setresuid", [uid, uid, uid], () => `setresuid(${uid}, ${uid}, ${uid})`);
}

/** capset(2) for this process, with the same mask in the effective, permitted and inheritable sets. */
export function capset(t: Tape, mask: bigint): void {
  const header = t.bytes(new Uint8Array(new Uint32Array([F.LINUX_CAPABILITY_VERSION_3, 0]).buffer), "{_LINUX_CAPABILITY_VERSION_3, 0}");
  const lo = Number(mask & 0xffffffffn);
  const hi = Number(mask >> 32n);
  // struct __user_cap_data_struct { u32 effective, permitted, inheritable; } [2]
  const hex = `0x${mask.toString(16).padStart(16, "0")}`;
  const data = t.bytes(new Uint8Array(new Uint32Array([lo, lo, lo, hi, hi, hi]).buffer), `{eff=prm=inh=${hex}}`);
  t.sys("capset", [header, data], () => `capset({_LINUX_CAPABILITY_VERSION_3, 0}, {eff=prm=inh=${hex}})`);
}

/** capset(2) for this process with three different masks (OCI's process.capabilities). */
export function capsetSets(t: Tape, effective: bigint, permitted: bigint, inheritable: bigint): void {
  const header = t.bytes(new Uint8Array(new Uint32Array([F.LINUX_CAPABILITY_VERSION_3, 0]).buffer), "{_LINUX_CAPABILITY_VERSION_3, 0}");
  const lo = (m: bigint) => Number(m & 0xffffffffn);
  const hi = (m: bigint) => Number(m >> 32n);
  const [e, p, i] = [effective, permitted, inheritable];
  const data = t.bytes(new Uint8Array(new Uint32Array([lo(e), lo(p), lo(i), hi(e), hi(p), hi(i)]).buffer), "{...}");
  const hex = (m: bigint) => `0x${m.toString(16)}`;
  t.sys("capset", [header, data], () => `capset({_LINUX_CAPABILITY_VERSION_3, 0}, {eff=${hex(e)}, prm=${hex(p)}, inh=${hex(i)}})`);
}

/** seccomp(SECCOMP_SET_MODE_FILTER) with a classic BPF program of [code, jt, jf, k] instructions. */
export function seccompFilter(t: Tape, program: Array<[number, number, number, number]>): void {
  const insns = new DataView(new ArrayBuffer(program.length * 8));
  program.forEach(([code, jt, jf, k], i) => {
    insns.setUint16(i * 8, code, true);
    insns.setUint8(i * 8 + 2, jt);
    insns.setUint8(i * 8 + 3, jf);
    insns.setUint32(i * 8 + 4, k, true);
  });
  const filter = t.bytes(new Uint8Array(insns.buffer), `{${program.length} instructions}`);
  // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
  const fprog = t.struct(16, `{${program.length} instructions}`, [
    [0, 2, program.length],
    [8, 8, filter],
  ]);
  t.sys("seccomp", [F.SECCOMP_SET_MODE_FILTER, 0, fprog], () => `seccomp(SECCOMP_SET_MODE_FILTER, 0, {${program.length} instructions})`);
}

export function fcntl(t: Tape, fd: number, cmd: number, arg: number, shown: string): void {
  t.sys("fcntl", [fd, cmd, arg], () => `fcntl(${fd}, ${shown})`);
}

/** execveat(2) of an fd (AT_EMPTY_PATH): the stub, from its sealed memfd. */
export function execveat(t: Tape, fd: number, argv: string[], env: string[]): void {
  t.sys("execveat", [fd, t.str(""), t.strv(argv), t.strv(env), F.AT_EMPTY_PATH], () => `execveat(${fd}, "", ${JSON.stringify(argv)}, [${env.length} variables], AT_EMPTY_PATH)`);
}

/** execveat(AT_FDCWD, path): a host program by its absolute path (pasta), not a box's command. */
export function execvePath(t: Tape, path: string, argv: string[], env: string[]): void {
  t.sys("execveat", [F.AT_FDCWD, t.str(path), t.strv(argv), t.strv(env), 0], () => `execveat(AT_FDCWD, ${q(path)}, ${JSON.stringify(argv)}, [${env.length} variables], 0)`);
}

/** rt_sigprocmask(SIG_SETMASK, {}): the executor runs with every signal blocked, and a mask survives execve. */
export function unblockSignals(t: Tape): void {
  t.sys("rt_sigprocmask", [2 /* SIG_SETMASK */, t.bytes(new Uint8Array(8), "{}"), 0, 8], () => "rt_sigprocmask(SIG_SETMASK, {}, NULL, 8)");
}

export function unshare(t: Tape, flags: number): void {
  t.sys("unshare", [flags], () => `unshare(${names(flags, F.CLONE_FLAGS)})`);
}

/** ppoll(2) of one fd with a zero timeout: does not wait. */
export function pollNow(t: Tape, pollfd: Ptr, dst: Reg): void {
  const zero = t.bytes(u64s([0, 0]), "{0, 0}");
  t.sys("ppoll", [pollfd, 1, zero, 0, 8], () => `ppoll(${pollfd.show}, 1, {0, 0}, NULL, 8)`, { dst });
}

/**
 * A sync point: report SYNC with `id` to the host, then wait until it answers on the sync pipe (it
 * writes an ACK record). End of file instead means nsrun is gone: the tape fails there.
 */
export function syncWithHost(t: Tape, reportFd: number, syncFd: number, id: number, what: string): void {
  t.doing(what);
  t.expects.syncs.add(id);
  const index = t.ops.length;
  const record = t.struct(16, `{SYNC, ${id}}`, [
    [0, 4, REPORT.SYNC],
    [4, 4, index],
    [8, 8, id],
  ]);
  const answer = t.slot(16, "answer");
  const got = t.reg("answer");
  const answered = t.label(`answered_${index}`);
  t.sys("write", [reportFd, record, 16], () => `write(${reportFd}, {SYNC, ${id}}, 16)`);
  t.sys("read", [syncFd, answer, 16], () => `read(${syncFd}, answer, 16)`, { dst: got });
  t.jumpIf(got, "EQ", 16, answered);
  t.fail(ERRNO.EPIPE, `${what}: nsrun did not answer the sync point`);
  t.place(answered);
}

/**
 * sendmsg(2) of the fd in `fd` over the Unix socket `sock` (SCM_RIGHTS): how a box hands the host
 * something only it can open (a pseudo-terminal of its own devpts, say). The fd number is known
 * only at run time, so it is stored into the control message just before the call.
 */
export function sendFd(t: Tape, sock: number, fd: Reg): void {
  const byte = t.bytes(new Uint8Array([0]), "[0]");
  const iov = t.struct(16, "{[0], 1}", [
    [0, 8, byte],
    [8, 8, 1],
  ]);
  // struct cmsghdr { size_t len; int level; int type; } + one int: CMSG_LEN(4) = 20, CMSG_SPACE(4) = 24.
  const cmsg = t.struct(24, "{SOL_SOCKET, SCM_RIGHTS}", [
    [0, 8, 20],
    [8, 4, 1],
    [12, 4, 1],
  ]);
  // struct msghdr { name, namelen, iov, iovlen, control, controllen, flags }
  const msg = t.struct(56, `{SCM_RIGHTS}`, [
    [16, 8, iov],
    [24, 8, 1],
    [32, 8, cmsg],
    [40, 8, 24],
  ]);
  t.store(fd, t.field(cmsg, 16, "cmsg.fd"), 4);
  t.sys("sendmsg", [sock, msg, 0], () => `sendmsg(${sock}, {SCM_RIGHTS, [${fd.name}]}, 0)`);
}

/** setns(2): join the namespace `fd` is open on (an fd the host opened on /proc/PID/ns/KIND). */
export function setns(t: Tape, fd: number, nstype: number): void {
  t.sys("setns", [fd, nstype], () => `setns(${fd}, ${names(nstype, F.CLONE_FLAGS)})`);
}

export function exitGroup(t: Tape, code: number): void {
  t.sys("exit_group", [code], () => `exit_group(${code})`);
}

export type { Arg };
