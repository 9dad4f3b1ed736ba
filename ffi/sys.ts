// Typed, libc-shaped wrappers: one method per syscall, each checked, each traceable.
// `Sys` is the seam: core/ talks only to this interface, so tests can record calls with a fake.
import { ptr } from "bun:ffi";
import * as F from "./flags";
import { check, cstr, libc, q, SyscallError } from "./libc";

export interface Sys {
  unshare(flags: number): void;
  writeFile(path: string, text: string): void;
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void;
  mountSetattr(dirfd: number, path: string, atFlags: number, attrSet: number): void;
  umount2(target: string, flags: number): void;
  pivotRoot(newRoot: string, putOld: string): void;
  chdir(path: string): void;
  getcwd(): string;
  openat(dirfd: number, path: string, flags: number, mode?: number): number;
  openat2(dirfd: number, path: string, flags: number, resolve: number): number;
  mkdirat(dirfd: number, name: string, mode: number): void;
  symlinkat(linkTo: string, dirfd: number, name: string): void;
  close(fd: number): void;
  sethostname(name: string): void;
  setgroups(groups: number[]): void;
  setresgid(gid: number): void;
  setresuid(uid: number): void;
  prctl(option: number, arg: number, arg3?: number): void;
  /** capset(2) for this process: effective, permitted, inheritable masks. */
  capset(effective: bigint, permitted: bigint, inheritable: bigint): void;
  setsid(): void;
  /** -1 is RLIM_INFINITY. */
  setrlimit(resource: number, soft: number, hard: number): void;
  /** seccomp(SECCOMP_SET_MODE_FILTER) with a classic BPF program of [code, jt, jf, k] instructions. */
  seccompFilter(program: Array<[number, number, number, number]>, tsync: boolean): void;
  loopbackUp(): void;
  closeRangeCloexec(first: number): void;
  clearNonblock(fd: number): void;
  /** Set every signal the process ignores back to its default: ignored signals survive execve. */
  resetIgnoredSignals(): void;
  /** Returns only on failure, by throwing. */
  execve(path: string, argv: string[], env: string[]): never;
}

/** Writes one line per call to stderr when tracing: the syscall, its arguments, its result and time. */
export type Tracer = ((line: string) => void) | null;

export class LinuxSys implements Sys {
  constructor(private readonly trace: Tracer = null) {}

  /** Run one call: check its result, and trace it with flags as names. */
  private call(syscall: string, shown: string, fn: () => number | bigint): number {
    const t0 = this.trace ? performance.now() : 0;
    try {
      const r = check(syscall, fn(), shown);
      this.trace?.(`${shown} = ${r}  ${(performance.now() - t0).toFixed(3)}ms`);
      return r;
    } catch (e) {
      if (e instanceof SyscallError) this.trace?.(`${shown} = -1 ${e.errnoName}  ${(performance.now() - t0).toFixed(3)}ms`);
      throw e;
    }
  }

  unshare(flags: number): void {
    this.call("unshare", `unshare(${F.flagNames(flags, F.CLONE_FLAGS)})`, () => libc.unshare(flags));
  }

  writeFile(path: string, text: string): void {
    const fd = this.call("open", `open(${q(path)}, O_WRONLY)`, () =>
      libc.openat(F.AT_FDCWD, cstr(path), F.O_WRONLY | F.O_CLOEXEC, 0),
    );
    try {
      const buf = Buffer.from(text);
      this.call("write", `write(${q(path)}, ${q(text.trimEnd())})`, () => libc.write(fd, buf, buf.length));
    } finally {
      libc.close(fd);
    }
  }

  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    const shown = `mount(${source === null ? "NULL" : q(source)}, ${q(target)}, ${fstype === null ? "NULL" : q(fstype)}, ${F.flagNames(flags, F.MS_FLAGS)}, ${data === null ? "NULL" : q(data)})`;
    this.call("mount", shown, () =>
      libc.mount(
        source === null ? null : cstr(source),
        cstr(target),
        fstype === null ? null : cstr(fstype),
        flags,
        data === null ? null : cstr(data),
      ),
    );
  }

  mountSetattr(dirfd: number, path: string, atFlags: number, attrSet: number): void {
    // struct mount_attr { u64 attr_set, attr_clr, propagation, userns_fd; }
    const attr = new BigUint64Array([BigInt(attrSet), 0n, 0n, 0n]);
    const shown = `mount_setattr(${fdName(dirfd)}, ${q(path)}, ${F.flagNames(atFlags, { AT_EMPTY_PATH: F.AT_EMPTY_PATH, AT_RECURSIVE: F.AT_RECURSIVE })}, {attr_set=${F.flagNames(attrSet, F.MOUNT_ATTR_FLAGS)}})`;
    const p = cstr(path);
    this.call("mount_setattr", shown, () => libc.syscall(F.SYS_mount_setattr, dirfd, ptr(p), atFlags, ptr(attr), 32));
  }

  umount2(target: string, flags: number): void {
    const p = cstr(target);
    this.call("umount2", `umount2(${q(target)}, ${flags === F.MNT_DETACH ? "MNT_DETACH" : flags})`, () =>
      libc.umount2(p, flags),
    );
  }

  pivotRoot(newRoot: string, putOld: string): void {
    const a = cstr(newRoot);
    const b = cstr(putOld);
    this.call("pivot_root", `pivot_root(${q(newRoot)}, ${q(putOld)})`, () =>
      libc.syscall(F.SYS_pivot_root, ptr(a), ptr(b), 0, 0, 0),
    );
  }

  chdir(path: string): void {
    this.call("chdir", `chdir(${q(path)})`, () => libc.chdir(cstr(path)));
  }

  getcwd(): string {
    const buf = Buffer.alloc(4096);
    if (libc.getcwd(buf, buf.length) === null) return "";
    return buf.subarray(0, buf.indexOf(0)).toString();
  }

  openat(dirfd: number, path: string, flags: number, mode = 0): number {
    return this.call("openat", `openat(${fdName(dirfd)}, ${q(path)}, 0x${flags.toString(16)})`, () =>
      libc.openat(dirfd, cstr(path), flags | F.O_CLOEXEC, mode),
    );
  }

  openat2(dirfd: number, path: string, flags: number, resolve: number): number {
    // struct open_how { u64 flags, mode, resolve; }
    const how = new BigUint64Array([BigInt(flags | F.O_CLOEXEC), 0n, BigInt(resolve)]);
    const p = cstr(path);
    const shown = `openat2(${fdName(dirfd)}, ${q(path)}, {resolve=${F.flagNames(resolve, { RESOLVE_IN_ROOT: F.RESOLVE_IN_ROOT, RESOLVE_NO_MAGICLINKS: F.RESOLVE_NO_MAGICLINKS, RESOLVE_NO_SYMLINKS: F.RESOLVE_NO_SYMLINKS, RESOLVE_BENEATH: F.RESOLVE_BENEATH, RESOLVE_NO_XDEV: F.RESOLVE_NO_XDEV })}})`;
    return this.call("openat2", shown, () => libc.syscall(F.SYS_openat2, dirfd, ptr(p), ptr(how), 24, 0, 0));
  }

  mkdirat(dirfd: number, name: string, mode: number): void {
    this.call("mkdirat", `mkdirat(${fdName(dirfd)}, ${q(name)}, 0${mode.toString(8)})`, () =>
      libc.mkdirat(dirfd, cstr(name), mode),
    );
  }

  symlinkat(linkTo: string, dirfd: number, name: string): void {
    this.call("symlinkat", `symlinkat(${q(linkTo)}, ${fdName(dirfd)}, ${q(name)})`, () =>
      libc.symlinkat(cstr(linkTo), dirfd, cstr(name)),
    );
  }

  close(fd: number): void {
    libc.close(fd);
  }

  sethostname(name: string): void {
    const b = Buffer.from(name);
    this.call("sethostname", `sethostname(${q(name)})`, () => libc.sethostname(b, b.length));
  }

  setgroups(groups: number[]): void {
    const list = new Uint32Array(groups.length || 1);
    list.set(groups);
    this.call("setgroups", `setgroups(${groups.length}, [${groups.join(",")}])`, () =>
      libc.setgroups(groups.length, list),
    );
  }

  setresgid(gid: number): void {
    this.call("setresgid", `setresgid(${gid}, ${gid}, ${gid})`, () => libc.setresgid(gid, gid, gid));
  }

  setresuid(uid: number): void {
    this.call("setresuid", `setresuid(${uid}, ${uid}, ${uid})`, () => libc.setresuid(uid, uid, uid));
  }

  prctl(option: number, arg: number, arg3 = 0): void {
    const name = F.PR_NAMES[option] ?? String(option);
    this.call("prctl", `prctl(${name}, ${arg}${arg3 ? `, ${arg3}` : ""})`, () => libc.prctl(option, arg, arg3, 0, 0));
  }

  capset(effective: bigint, permitted: bigint, inheritable: bigint): void {
    const header = new Uint32Array([F.LINUX_CAPABILITY_VERSION_3, 0]);
    const words = (m: bigint) => [Number(m & 0xffffffffn), Number(m >> 32n)];
    const [e0, e1] = words(effective);
    const [p0, p1] = words(permitted);
    const [i0, i1] = words(inheritable);
    // struct __user_cap_data_struct { u32 effective, permitted, inheritable; } [2]
    const data = new Uint32Array([e0, p0, i0, e1, p1, i1]);
    const hex = (m: bigint) => `0x${m.toString(16).padStart(16, "0")}`;
    this.call("capset", `capset(eff=${hex(effective)}, prm=${hex(permitted)}, inh=${hex(inheritable)})`, () => libc.capset(header, data));
  }

  setsid(): void {
    this.call("setsid", "setsid()", () => libc.setsid());
  }

  setrlimit(resource: number, soft: number, hard: number): void {
    const v = (n: number) => (n < 0 ? 0xffffffffffffffffn : BigInt(n));
    const lim = new BigUint64Array([v(soft), v(hard)]);
    const show = (n: number) => (n < 0 ? "RLIM_INFINITY" : String(n));
    const name = Object.entries(F.RLIMIT).find(([, v]) => v === resource)?.[0].toUpperCase() ?? String(resource);
    this.call("prlimit", `prlimit(0, RLIMIT_${name}, {${show(soft)}, ${show(hard)}})`, () => libc.prlimit(0, resource, lim, null));
  }

  seccompFilter(program: Array<[number, number, number, number]>, tsync: boolean): void {
    const insns = new DataView(new ArrayBuffer(program.length * 8));
    program.forEach(([code, jt, jf, k], i) => {
      insns.setUint16(i * 8, code, true);
      insns.setUint8(i * 8 + 2, jt);
      insns.setUint8(i * 8 + 3, jf);
      insns.setUint32(i * 8 + 4, k, true);
    });
    // struct sock_fprog { unsigned short len; struct sock_filter *filter; }
    const fprog = new BigUint64Array([BigInt(program.length), BigInt(ptr(new Uint8Array(insns.buffer)))]);
    const flags = tsync ? F.SECCOMP_FILTER_FLAG_TSYNC : 0;
    this.call("seccomp", `seccomp(SECCOMP_SET_MODE_FILTER, ${tsync ? "SECCOMP_FILTER_FLAG_TSYNC" : "0"}, {${program.length} instructions})`, () =>
      libc.syscall(F.SYS_seccomp, F.SECCOMP_SET_MODE_FILTER, flags, ptr(fprog), 0, 0),
    );
  }

  loopbackUp(): void {
    // ioctl(SIOCGIFFLAGS) then (SIOCSIFFLAGS | IFF_UP) on struct ifreq { char name[16]; short flags; ... }
    const s = this.call("socket", "socket(AF_INET, SOCK_DGRAM)", () =>
      libc.socket(F.AF_INET, F.SOCK_DGRAM | F.SOCK_CLOEXEC, 0),
    );
    try {
      const ifr = Buffer.alloc(40);
      ifr.write("lo", 0);
      this.call("ioctl", `ioctl("lo", SIOCGIFFLAGS)`, () => libc.ioctl(s, F.SIOCGIFFLAGS, ifr));
      ifr.writeUInt16LE(ifr.readUInt16LE(F.IFNAMSIZ) | F.IFF_UP, F.IFNAMSIZ);
      this.call("ioctl", `ioctl("lo", SIOCSIFFLAGS, IFF_UP)`, () => libc.ioctl(s, F.SIOCSIFFLAGS, ifr));
    } finally {
      libc.close(s);
    }
  }

  closeRangeCloexec(first: number): void {
    this.call("close_range", `close_range(${first}, ~0U, CLOSE_RANGE_CLOEXEC)`, () =>
      libc.syscall(F.SYS_close_range, first, 0xffffffff, F.CLOSE_RANGE_CLOEXEC, 0, 0, 0),
    );
  }

  resetIgnoredSignals(): void {
    // SIGKILL and SIGSTOP cannot be changed; 32 and 33 are glibc's own (SIGCANCEL, SIGSETXID).
    const SIG_DFL = null;
    for (let sig = 1; sig <= 64; sig++) if (![9, 19, 32, 33].includes(sig)) libc.signal(sig, SIG_DFL);
    this.trace?.("signal(1..64, SIG_DFL) = 0");
  }

  clearNonblock(fd: number): void {
    const fl = libc.fcntl(fd, F.F_GETFL, 0);
    if (fl >= 0 && fl & F.O_NONBLOCK) libc.fcntl(fd, F.F_SETFL, fl & ~F.O_NONBLOCK);
  }

  execve(path: string, argv: string[], env: string[]): never {
    const keep: Buffer[] = [];
    const vec = (list: string[]) => {
      const arr = new BigUint64Array(list.length + 1);
      list.forEach((s, i) => {
        const b = cstr(s);
        keep.push(b);
        arr[i] = BigInt(ptr(b));
      });
      return arr;
    };
    const a = vec(argv);
    const e = vec(env);
    const p = cstr(path);
    this.call("execve", `execve(${q(path)}, ${JSON.stringify(argv)})`, () => libc.execve(p, a, e));
    throw new Error("unreachable: execve returned");
  }
}

function fdName(fd: number): string {
  return fd === F.AT_FDCWD ? "AT_FDCWD" : String(fd);
}
