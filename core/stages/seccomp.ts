// Stage: the seccomp filter (seccomp(2), "SECCOMP_SET_MODE_FILTER"). A profile is plain data (rules
// of syscall numbers, argument conditions and actions); compileProfile turns it into classic BPF,
// and evaluate() runs that BPF the way the kernel would, so tests can ask the filter questions.
//
// The filter first checks the architecture: a syscall made through another ABI (int 0x80 for i386,
// or the x32 numbers) would have other numbers, so it never reaches the rules.
import { ERRNO } from "../../ffi/errno";
import * as F from "../../ffi/flags";
import { seccompFilter } from "../tape/calls";
import type { Tape } from "../tape/tape";
import { syscallTable } from "../../ffi/syscalls";

export type Action =
  | { kind: "allow" }
  | { kind: "errno"; errno: number }
  | { kind: "kill_process" }
  | { kind: "kill_thread" }
  | { kind: "trap" }
  | { kind: "log" };

export type CmpOp = "EQ" | "NE" | "LT" | "LE" | "GT" | "GE" | "MASKED_EQ";

export interface ArgCondition {
  index: number;
  op: CmpOp;
  value: bigint;
  /** For MASKED_EQ: the value the masked argument must equal (`value` is the mask). */
  valueTwo: bigint;
}

export interface Rule {
  nrs: number[];
  action: Action;
  /** All must hold (AND), as in the OCI runtime spec. */
  args: ArgCondition[];
}

export interface Profile {
  defaultAction: Action;
  rules: Rule[];
}

/** One BPF instruction: struct sock_filter { u16 code; u8 jt; u8 jf; u32 k; }. */
export type Insn = [code: number, jt: number, jf: number, k: number];

export const AUDIT_ARCH_X86_64 = 0xc000003e;
const X32_SYSCALL_BIT = 0x40000000;

// <linux/filter.h> opcodes
const BPF_LD_W_ABS = 0x20;
const BPF_ALU_AND_K = 0x54;
const BPF_JMP_JEQ_K = 0x15;
const BPF_JMP_JGT_K = 0x25;
const BPF_JMP_JGE_K = 0x35;
const BPF_RET_K = 0x06;
const BPF_JMP_JA = 0x05;

// <linux/seccomp.h> return values
const SECCOMP_RET_KILL_PROCESS = 0x80000000;
const SECCOMP_RET_KILL_THREAD = 0x00000000;
const SECCOMP_RET_TRAP = 0x00030000;
const SECCOMP_RET_ERRNO = 0x00050000;
const SECCOMP_RET_LOG = 0x7ffc0000;
const SECCOMP_RET_ALLOW = 0x7fff0000;

// struct seccomp_data { int nr; u32 arch; u64 instruction_pointer; u64 args[6]; } (little-endian)
const OFF_NR = 0;
const OFF_ARCH = 4;
const argLo = (i: number) => 16 + i * 8;
const argHi = (i: number) => 16 + i * 8 + 4;

export function actionValue(a: Action): number {
  switch (a.kind) {
    case "allow":
      return SECCOMP_RET_ALLOW;
    case "errno":
      return (SECCOMP_RET_ERRNO | (a.errno & 0xffff)) >>> 0;
    case "kill_process":
      return SECCOMP_RET_KILL_PROCESS;
    case "kill_thread":
      return SECCOMP_RET_KILL_THREAD;
    case "trap":
      return SECCOMP_RET_TRAP;
    case "log":
      return SECCOMP_RET_LOG;
  }
}

/** What the common container profiles refuse, returning EPERM so programs can fall back. */
export const DEFAULT_DENIED = [
  // kernel modules, kexec, reboot, swap
  "init_module", "finit_module", "delete_module", "kexec_load", "kexec_file_load", "reboot", "swapon", "swapoff",
  // kernel interfaces a box has no business with
  "bpf", "perf_event_open", "keyctl", "add_key", "request_key", "acct", "iopl", "ioperm", "syslog", "quotactl", "uselib",
  "lookup_dcookie", "_sysctl",
  // the mount family: a box must not rearrange its own view, nor undo a read-only bind
  "mount", "umount2", "pivot_root", "move_mount", "fsopen", "fsconfig", "fsmount", "fspick", "open_tree", "open_tree_attr", "mount_setattr",
  // other processes' memory, and handles that bypass path checks
  "ptrace", "process_vm_readv", "process_vm_writev", "open_by_handle_at", "userfaultfd",
  // the host's clock
  "clock_settime", "settimeofday", "adjtimex", "clock_adjtime",
  // io_uring: a large kernel surface that seccomp cannot see into (docker and podman refuse it too)
  "io_uring_setup", "io_uring_enter", "io_uring_register",
  // joining namespaces (new user namespaces through unshare/clone are refused by argument below)
  "setns",
];

const eperm: Action = { kind: "errno", errno: ERRNO.EPERM };

function nr(name: string): number {
  const n = syscallTable("x64")[name];
  if (n === undefined) throw new Error(`unknown syscall ${name}`);
  return n;
}

export function defaultProfile(): Profile {
  const newUser = (name: string): Rule => ({ nrs: [nr(name)], action: eperm, args: [{ index: 0, op: "MASKED_EQ", value: BigInt(F.CLONE_NEWUSER), valueTwo: BigInt(F.CLONE_NEWUSER) }] });
  // ioctl's request is an unsigned int to the kernel: compare the low 32 bits only.
  const ioctl = (request: number): Rule => ({ nrs: [nr("ioctl")], action: eperm, args: [{ index: 1, op: "MASKED_EQ", value: 0xffffffffn, valueTwo: BigInt(request) }] });
  return {
    defaultAction: { kind: "allow" },
    rules: [
      { nrs: DEFAULT_DENIED.map(nr), action: eperm, args: [] },
      newUser("unshare"),
      newUser("clone"),
      // clone3 passes its flags in memory, where a filter cannot look: ENOSYS makes libc fall back to clone.
      { nrs: [nr("clone3")], action: { kind: "errno", errno: ERRNO.ENOSYS }, args: [] },
      ioctl(F.TIOCSTI),
      ioctl(F.TIOCLINUX),
    ],
  };
}

/** A tiny assembler: instructions may jump to labels, resolved to the 8-bit offsets BPF wants. */
class Program {
  readonly code: Array<{ code: number; jt: number | string; jf: number | string; k: number } | { label: string }> = [];
  emit(code: number, k: number, jt: number | string = 0, jf: number | string = 0): void {
    this.code.push({ code, jt, jf, k: k >>> 0 });
  }
  label(name: string): void {
    this.code.push({ label: name });
  }
  assemble(): Insn[] {
    const at = new Map<string, number>();
    let n = 0;
    for (const c of this.code) if ("label" in c) at.set(c.label, n);
    else n++;
    const out: Insn[] = [];
    for (const c of this.code) {
      if ("label" in c) continue;
      const rel = (j: number | string) => {
        if (typeof j === "number") return j;
        const off = (at.get(j) ?? Number.NaN) - (out.length + 1);
        if (!(off >= 0 && off <= 255)) throw new Error(`seccomp: jump to ${j} out of range (${off})`);
        return off;
      };
      out.push([c.code, rel(c.jt), rel(c.jf), c.k]);
    }
    if (out.length > 4096) throw new Error(`seccomp: the filter has ${out.length} instructions; the kernel takes 4096`);
    return out;
  }
}

const hi = (v: bigint) => Number((v >> 32n) & 0xffffffffn);
const lo = (v: bigint) => Number(v & 0xffffffffn);

/** Emit a 64-bit comparison of args[index]; falls through when it holds, jumps to `fail` when not. */
function emitCondition(p: Program, c: ArgCondition, fail: string, id: string): void {
  const ok = `${id}-ok`;
  const [v, mask] = c.op === "MASKED_EQ" ? [c.valueTwo, c.value] : [c.value, 0xffffffffffffffffn];
  p.emit(BPF_LD_W_ABS, argHi(c.index));
  if (c.op === "MASKED_EQ") p.emit(BPF_ALU_AND_K, hi(mask));
  switch (c.op) {
    case "EQ":
    case "MASKED_EQ":
      p.emit(BPF_JMP_JEQ_K, hi(v), 0, fail);
      p.emit(BPF_LD_W_ABS, argLo(c.index));
      if (c.op === "MASKED_EQ") p.emit(BPF_ALU_AND_K, lo(mask));
      p.emit(BPF_JMP_JEQ_K, lo(v), 0, fail);
      break;
    case "NE":
      p.emit(BPF_JMP_JEQ_K, hi(v), 0, ok);
      p.emit(BPF_LD_W_ABS, argLo(c.index));
      p.emit(BPF_JMP_JEQ_K, lo(v), fail, 0);
      break;
    case "GT":
    case "GE":
      // hi > v.hi: holds; hi < v.hi: fails; equal: decide on the low word.
      p.emit(BPF_JMP_JGT_K, hi(v), ok, 0);
      p.emit(BPF_JMP_JEQ_K, hi(v), 0, fail);
      p.emit(BPF_LD_W_ABS, argLo(c.index));
      p.emit(c.op === "GT" ? BPF_JMP_JGT_K : BPF_JMP_JGE_K, lo(v), ok, fail);
      break;
    case "LT":
    case "LE":
      p.emit(BPF_JMP_JGT_K, hi(v), fail, 0);
      p.emit(BPF_JMP_JEQ_K, hi(v), 0, ok);
      p.emit(BPF_LD_W_ABS, argLo(c.index));
      // LT: fails when lo >= v.lo; LE: fails when lo > v.lo.
      p.emit(c.op === "LT" ? BPF_JMP_JGE_K : BPF_JMP_JGT_K, lo(v), fail, ok);
      break;
  }
  p.label(ok);
}

export function compileProfile(profile: Profile): Insn[] {
  const p = new Program();
  p.emit(BPF_LD_W_ABS, OFF_ARCH);
  p.emit(BPF_JMP_JEQ_K, AUDIT_ARCH_X86_64, 1, 0);
  p.emit(BPF_RET_K, SECCOMP_RET_KILL_PROCESS);
  p.emit(BPF_LD_W_ABS, OFF_NR);
  p.emit(BPF_JMP_JGE_K, X32_SYSCALL_BIT, 0, 1);
  p.emit(BPF_RET_K, actionValue(eperm));
  profile.rules.forEach((rule, r) => {
    rule.nrs.forEach((n, i) => {
      const next = `r${r}-${i}-next`;
      p.emit(BPF_LD_W_ABS, OFF_NR);
      p.emit(BPF_JMP_JEQ_K, n, 0, next);
      rule.args.forEach((c, j) => emitCondition(p, c, next, `r${r}-${i}-${j}`));
      p.emit(BPF_RET_K, actionValue(rule.action));
      p.label(next);
    });
  });
  p.emit(BPF_RET_K, actionValue(profile.defaultAction));
  return p.assemble();
}

/** Run a filter on one syscall, as the kernel's BPF interpreter would; returns the SECCOMP_RET_* value. */
export function evaluate(prog: Insn[], call: { nr: number; arch?: number; args?: bigint[] }): number {
  const data = new DataView(new ArrayBuffer(64));
  data.setInt32(OFF_NR, call.nr, true);
  data.setUint32(OFF_ARCH, call.arch ?? AUDIT_ARCH_X86_64, true);
  (call.args ?? []).forEach((a, i) => data.setBigUint64(16 + i * 8, BigInt.asUintN(64, a), true));
  let acc = 0;
  for (let pc = 0; pc < prog.length; pc++) {
    const [code, jt, jf, k] = prog[pc];
    if (code === BPF_LD_W_ABS) acc = data.getUint32(k, true);
    else if (code === BPF_ALU_AND_K) acc = (acc & k) >>> 0;
    else if (code === BPF_JMP_JEQ_K) pc += acc === k ? jt : jf;
    else if (code === BPF_JMP_JGT_K) pc += acc > k ? jt : jf;
    else if (code === BPF_JMP_JGE_K) pc += acc >= k ? jt : jf;
    else if (code === BPF_JMP_JA) pc += k;
    else if (code === BPF_RET_K) return k >>> 0;
    else throw new Error(`unknown BPF opcode ${code}`);
  }
  throw new Error("filter fell off its end");
}

export const RET = { ALLOW: SECCOMP_RET_ALLOW, KILL_PROCESS: SECCOMP_RET_KILL_PROCESS, errno: (e: number) => (SECCOMP_RET_ERRNO | e) >>> 0 };

/** Tape: load the filter. The executor's child is one thread, so no TSYNC is needed. */
export function emitSeccomp(t: Tape, program: Insn[]): void {
  t.doing(`load the seccomp filter (${program.length} instructions)`);
  seccompFilter(t, program);
}
