// A recording test double of Sys (like youki's TestHelperSyscall): every call is kept as
// { name, args } with typed arguments, fds come from a counter starting at 100, and any call can be
// made to fail with an errno, as a SyscallError carrying the same hint the real wrapper would give.
import { hintFor } from "../ffi/hints";
import { SyscallError } from "../ffi/libc";
import type { Sys } from "../ffi/sys";

export type SysName = keyof Sys;
export type Call = { [K in SysName]: { name: K; args: Parameters<Sys[K]> } }[SysName];

/** The kernel's name for a Sys method, as LinuxSys passes it to SyscallError and hintFor. */
const SYSCALL: Partial<Record<SysName, string>> = {
  pivotRoot: "pivot_root",
  mountSetattr: "mount_setattr",
  closeRangeCloexec: "close_range",
  writeFile: "write",
};

/** What the fake's execve throws when it "succeeds": the process would have been replaced. */
export class ExecReplaced extends Error {
  constructor(readonly path: string) {
    super(`execve(${path}) replaced the process`);
  }
}

export class FakeSys implements Sys {
  readonly calls: Call[] = [];
  cwd = "/";
  private nextFd = 100;
  private readonly seen = new Map<SysName, number>();
  private readonly failures = new Map<SysName, Map<number | "every", number>>();

  /** Make the nth (1-based) call of `name`, or every call, throw a SyscallError with `errno`. */
  failOn(name: SysName, nth: number | "every", errno: number): this {
    const rules = this.failures.get(name) ?? new Map();
    rules.set(nth, errno);
    this.failures.set(name, rules);
    return this;
  }

  /** The calls of one name, for assertions that do not care about the others. */
  only<K extends SysName>(name: K): Parameters<Sys[K]>[] {
    return this.calls.filter((c) => c.name === name).map((c) => c.args as Parameters<Sys[K]>);
  }

  private record<K extends SysName>(name: K, ...args: Parameters<Sys[K]>): void {
    this.calls.push({ name, args } as Call);
    const n = (this.seen.get(name) ?? 0) + 1;
    this.seen.set(name, n);
    const rules = this.failures.get(name);
    const errno = rules?.get(n) ?? rules?.get("every");
    if (errno === undefined) return;
    const syscall = SYSCALL[name] ?? name;
    const shown = `${syscall}(${args.map((a) => JSON.stringify(a)).join(", ")})`;
    throw new SyscallError(syscall, shown, errno, hintFor(syscall, errno));
  }

  private fd(): number {
    return this.nextFd++;
  }

  unshare(flags: number): void {
    this.record("unshare", flags);
  }
  writeFile(path: string, text: string): void {
    this.record("writeFile", path, text);
  }
  mount(source: string | null, target: string, fstype: string | null, flags: number, data: string | null): void {
    this.record("mount", source, target, fstype, flags, data);
  }
  mountSetattr(dirfd: number, path: string, atFlags: number, attrSet: number): void {
    this.record("mountSetattr", dirfd, path, atFlags, attrSet);
  }
  umount2(target: string, flags: number): void {
    this.record("umount2", target, flags);
  }
  pivotRoot(newRoot: string, putOld: string): void {
    this.record("pivotRoot", newRoot, putOld);
  }
  chdir(path: string): void {
    this.record("chdir", path);
  }
  getcwd(): string {
    this.record("getcwd");
    return this.cwd;
  }
  openat(dirfd: number, path: string, flags: number, mode?: number): number {
    this.record("openat", dirfd, path, flags, mode);
    return this.fd();
  }
  openat2(dirfd: number, path: string, flags: number, resolve: number): number {
    this.record("openat2", dirfd, path, flags, resolve);
    return this.fd();
  }
  mkdirat(dirfd: number, name: string, mode: number): void {
    this.record("mkdirat", dirfd, name, mode);
  }
  symlinkat(linkTo: string, dirfd: number, name: string): void {
    this.record("symlinkat", linkTo, dirfd, name);
  }
  close(fd: number): void {
    this.record("close", fd);
  }
  sethostname(name: string): void {
    this.record("sethostname", name);
  }
  setgroups(groups: number[]): void {
    this.record("setgroups", groups);
  }
  setresgid(gid: number): void {
    this.record("setresgid", gid);
  }
  setresuid(uid: number): void {
    this.record("setresuid", uid);
  }
  prctl(option: number, arg: number, arg3?: number): void {
    if (arg3 === undefined) this.record("prctl", option, arg);
    else this.record("prctl", option, arg, arg3);
  }
  capset(effective: bigint, permitted: bigint, inheritable: bigint): void {
    this.record("capset", effective, permitted, inheritable);
  }
  setsid(): void {
    this.record("setsid");
  }
  setrlimit(resource: number, soft: number, hard: number): void {
    this.record("setrlimit", resource, soft, hard);
  }
  seccompFilter(program: Array<[number, number, number, number]>, tsync: boolean): void {
    this.record("seccompFilter", program, tsync);
  }
  loopbackUp(): void {
    this.record("loopbackUp");
  }
  closeRangeCloexec(first: number): void {
    this.record("closeRangeCloexec", first);
  }
  resetIgnoredSignals(): void {
    this.record("resetIgnoredSignals");
  }
  clearNonblock(fd: number): void {
    this.record("clearNonblock", fd);
  }
  execve(path: string, argv: string[], env: string[]): never {
    this.record("execve", path, argv, env);
    throw new ExecReplaced(path);
  }
}
