// The tape: a box's setup compiled into a flat list of syscalls, which the executor (ffi/executor/
// executor.c) runs in the box's first process, where no JavaScript can run. This file is the
// assembler: it collects ops with symbolic operands (registers, strings, labels), prints them as a
// listing (what golden tests compare and --trace shows), and encodes them into the binary layout of
// ffi/executor/protocol.h. It decides nothing about boxes; core/stages/compile.ts does.
import { CMP, type Cmp, HEADER, OP, OP_BYTES, OP_FIELD, OP_RETRY_EAGAIN, REGISTERS, RESULT_BYTES, TAPE_MAGIC, TAPE_VERSION } from "../../ffi/executor/protocol";
import { nameBytes } from "../../ffi/names";
import { syscallNumbers, type TapeSyscall } from "../../ffi/syscalls";
import type { StageTitle } from "../pipeline";

/**
 * A register: holds one syscall result (an fd, mostly) for later ops. `id` is the tape's own number
 * for it; which of the executor's NSRUN_REGISTERS holds it is decided when the tape is encoded
 * (allocate): registers whose values are no longer used are given to others.
 */
export interface Reg {
  readonly id: number;
  readonly name: string;
}

/** An address in the tape's data: a string, a struct, a scratch slot. */
export interface Ptr {
  readonly item: number;
  readonly offset: number;
  readonly show: string;
}

/** A jump target; placed with Tape.place. */
export interface Label {
  index: number | null;
  readonly name: string;
}

export type Arg = number | bigint | Reg | Ptr | Label;

/** What the box is doing while an op runs, as an error names it. */
export interface Step {
  stage: StageTitle;
  /** `mounts[0]: bind "/data" on "/ro"`. */
  what: string;
  /** Advice for an errno (by name) at this step, ahead of the syscall's general advice. */
  hints?: Partial<Record<string, string>>;
}

export interface TapeOp {
  code: number;
  /** The syscall's name, or the control op's ("jump_if"). */
  name: string;
  /** The call as the listing, errors and --trace print it (made only when asked for). */
  readonly text: string;
  args: Arg[];
  dst: Reg | null;
  /** Errnos that do not end the tape; the result register then holds -errno. */
  ok: number[];
  /** EAGAIN runs the syscall again (protocol.h NSRUN_OP_RETRY_EAGAIN). */
  retryEagain: boolean;
  step: Step;
}

/** Bytes in the tape's data; `pointers` are addresses of other items, filled in when encoded. */
interface Item {
  bytes: Uint8Array;
  pointers: Array<{ offset: number; to: Ptr }>;
}

const isReg = (a: Arg): a is Reg => typeof a === "object" && "id" in a;
const isPtr = (a: Arg): a is Ptr => typeof a === "object" && "item" in a;
const isLabel = (a: Arg): a is Label => typeof a === "object" && "index" in a;

export const STACK_SIZE = 64 * 1024;

export class Tape {
  readonly ops: TapeOp[] = [];
  get opCount(): number {
    return this.ops.length;
  }
  /** Where each stage begins: [op index, stage], in order (a stage with no ops shares its index). */
  readonly stages: Array<[index: number, title: StageTitle]> = [];
  /** clone3(2) flags (CLONE_NEW*), a cgroup v2 directory to start in, and where reports go. */
  cloneFlags = 0;
  cgroupFd = -1;
  reportFd = -1;
  /**
   * What the process may send on the report pipe besides FAILED: the launcher (core/launch/)
   * refuses any other record. The emitters that write records say so here.
   */
  readonly expects: { syncs: Set<number>; pid: boolean; hooks: boolean; execFailed: boolean } = { syncs: new Set(), pid: false, hooks: false, execFailed: false };
  /** The host fds the process keeps (keepOnlyFds): a sealed launch hands them through an execve. */
  kept: number[] = [];
  /** The command the tape ends by starting, and the paths it tries: what an exec failure names. */
  command: { args: string[]; paths: string[] } | null = null;
  private readonly items: Item[] = [];
  private readonly regs = new Map<string, Reg>();
  private step: Step = { stage: "namespaces", what: "start the box" };
  private readonly nr: ReturnType<typeof syscallNumbers>;

  constructor(arch: NodeJS.Architecture = process.arch) {
    this.nr = syscallNumbers(arch);
  }

  /** The register called `name` (the same one every time); any number of them, see allocate. */
  reg(name: string): Reg {
    let r = this.regs.get(name);
    if (!r) {
      r = { id: this.regs.size, name };
      this.regs.set(name, r);
    }
    return r;
  }

  /**
   * The executor's register for each register of the tape: a linear scan over live ranges. A
   * register lives from the first op that names it to the last; since every jump goes forward
   * (checked in encode), any path from one to the other runs only through ops in between, so two
   * registers whose ranges do not overlap can share one of the executor's. Throws when more than
   * NSRUN_REGISTERS live at once, or when an op reads a register no earlier op writes (it would
   * read whatever the register's last owner left there).
   */
  allocate(): Map<Reg, number> {
    const range = new Map<Reg, [first: number, last: number]>();
    this.ops.forEach((op, i) => {
      for (const r of op.args.filter(isReg)) {
        const seen = range.get(r);
        // Shared registers hold what their last owner left: a value must be written before it is read.
        if (!seen) throw new Error(`tape: op ${i} (${op.name}) reads register ${r.name} before any op writes it: a bug in nsrun's compiler`);
        seen[1] = i;
      }
      if (op.dst) {
        const seen = range.get(op.dst);
        if (seen) seen[1] = i;
        else range.set(op.dst, [i, i]);
      }
    });
    const out = new Map<Reg, number>();
    const free = Array.from({ length: REGISTERS }, (_, k) => REGISTERS - 1 - k); // pop() gives 0 first
    const live: Array<[last: number, reg: Reg]> = [];
    for (const [r, [first, last]] of [...range].sort((a, b) => a[1][0] - b[1][0] || a[0].id - b[0].id)) {
      // A register whose last use is before this one's first is free again (not at the same op).
      for (let k = live.length - 1; k >= 0; k--) {
        if (live[k][0] < first) {
          free.push(out.get(live[k][1]) as number);
          live.splice(k, 1);
        }
      }
      const n = free.sort((a, b) => b - a).pop();
      if (n === undefined) {
        const names = live.map(([, l]) => l.name).join(", ");
        throw new Error(`tape: more than ${REGISTERS} registers live at op ${first} (${r.name} and ${names}): a bug in nsrun's compiler`);
      }
      out.set(r, n);
      live.push([last, r]);
    }
    return out;
  }

  /** Every jump goes forward, to an op of the tape or its end: the executor refuses any other. */
  private checkJumps(): void {
    this.ops.forEach((op, i) => {
      for (const a of op.args) {
        if (!isLabel(a)) continue;
        if (a.index === null) throw new Error(`tape: label ${a.name} is jumped to but never placed`);
        if (a.index <= i || a.index > this.ops.length) throw new Error(`tape: op ${i} (${op.name}) jumps to ${a.name} at ${a.index}: jumps must go forward`);
      }
    });
  }

  /** Ops from here on belong to `title`. */
  stage(title: StageTitle, what: string = title): void {
    this.stages.push([this.ops.length, title]);
    this.step = { stage: title, what };
  }

  /** Ops from here on do `what` (within the current stage). */
  doing(what: string, hints?: Step["hints"]): void {
    this.step = { stage: this.step.stage, what, hints };
  }

  get current(): Step {
    return this.step;
  }

  // ---- data -------------------------------------------------------------------------------

  bytes(bytes: Uint8Array, show: string): Ptr {
    this.items.push({ bytes, pointers: [] });
    return { item: this.items.length - 1, offset: 0, show };
  }

  /** A struct of `size` bytes: each field a little-endian number, or the address of another item. */
  struct(size: number, show: string, fields: Array<[offset: number, width: 2 | 4 | 8, value: number | bigint | Ptr]>): Ptr {
    const bytes = new Uint8Array(size);
    const view = new DataView(bytes.buffer);
    const pointers: Item["pointers"] = [];
    for (const [offset, width, value] of fields) {
      if (typeof value === "object") pointers.push({ offset, to: value });
      else if (width === 2) view.setUint16(offset, Number(value), true);
      else if (width === 4) view.setUint32(offset, Number(value), true);
      else view.setBigUint64(offset, BigInt.asUintN(64, BigInt(value)), true);
    }
    this.items.push({ bytes, pointers });
    return { item: this.items.length - 1, offset: 0, show };
  }

  /** A NUL-terminated string. */
  str(s: string): Ptr {
    return this.bytes(nameBytes(`${s}\0`), JSON.stringify(s));
  }

  /** Zeroed scratch space the executor may write. */
  slot(size: number, show = `buf[${size}]`): Ptr {
    return this.bytes(new Uint8Array(size), show);
  }

  /** A NULL-terminated array of string pointers (argv, envp). */
  strv(list: string[]): Ptr {
    const show = `[${list.map((s) => JSON.stringify(s)).join(", ")}]`;
    return this.struct(8 * (list.length + 1), show, list.map((s, i) => [8 * i, 8, this.str(s)]));
  }

  /** A field inside a data item. */
  field(p: Ptr, offset: number, show: string): Ptr {
    return { item: p.item, offset: p.offset + offset, show };
  }

  // ---- ops --------------------------------------------------------------------------------

  /** One syscall. `text` is how it prints; `dst` keeps its result; `ok` lists errnos that are not failures; `retryEagain` makes it run again on EAGAIN. */
  sys(name: TapeSyscall, args: Arg[], text: () => string, opts: { dst?: Reg; ok?: number[]; retryEagain?: boolean } = {}): number {
    return this.push(this.nr[name], name, args, text, opts.dst ?? null, opts.ok ?? [], opts.retryEagain === true);
  }

  label(name: string): Label {
    return { index: null, name };
  }

  place(l: Label): void {
    if (l.index !== null) throw new Error(`tape: label ${l.name} placed twice`);
    l.index = this.ops.length;
  }

  jump(to: Label): void {
    this.push(OP.JUMP, "jump", [to], () => `jump @${to.index}`, null, []);
  }

  jumpIf(value: Reg, cmp: Cmp, operand: number, to: Label): void {
    const test = { EQ: "==", NE: "!=", LT: "<", GE: ">=", ANY: "&" }[cmp];
    const shown = cmp === "ANY" ? `0x${operand.toString(16)}` : String(operand);
    this.push(OP.JUMP_IF, "jump_if", [value, CMP[cmp], operand, to], () => `if ${value.name} ${test} ${shown} jump @${to.index}`, null, []);
  }

  /** "/proc/self/fd/<fd><suffix>" into a 64-byte slot, for interfaces that take only paths (overlayfs). */
  fdpath(fd: Reg, suffix: string): Ptr {
    const slot = this.slot(64, `"/proc/self/fd/${fd.name}${suffix}"`);
    this.push(OP.FDPATH, "fdpath", [fd, slot, this.str(suffix)], () => `fdpath(${fd.name}${suffix ? `, ${JSON.stringify(suffix)}` : ""})`, null, []);
    return slot;
  }

  load(addr: Ptr, width: 1 | 4 | 8, dst: Reg): void {
    this.push(OP.LOAD, "load", [addr, width], () => `load${width * 8}(${addr.show})`, dst, []);
  }

  store(value: Reg, addr: Ptr, width: 4 | 8): void {
    this.push(OP.STORE, "store", [value, addr, width], () => `store${width * 8}(${addr.show}, ${value.name})`, null, []);
  }

  /**
   * Start the command: execve(2) the first of `paths` that starts, with `argv` and `envp`; if none
   * does, an EXEC_FAILED record and exit 126 or 127 (protocol.h). Only a sealed launch runs it.
   */
  execCandidates(reportFd: number, paths: string[], argv: string[], envp: string[]): void {
    if (!paths.length) throw new Error("tape: exec with no path to try");
    this.expects.execFailed = true;
    this.command = { args: argv, paths };
    const list = this.strv(paths);
    this.push(OP.EXEC, "exec", [reportFd, paths.length, list, this.strv(argv), this.strv(envp)], () => `exec(${list.show}, ${JSON.stringify(argv)}, env[${envp.length}])`, null, []);
  }

  /** End the tape here as a failure with `errno`, reported as this step's error. */
  fail(errno: number, text: string): void {
    this.push(OP.FAIL, "fail", [errno], () => text, null, []);
  }

  private push(code: number, name: string, args: Arg[], show: () => string, dst: Reg | null, ok: number[], retryEagain = false): number {
    if (args.length > 6) throw new Error(`tape: ${name} has more than 6 arguments`);
    for (const e of ok) if (e <= 0 || e >= 64) throw new Error(`tape: errno ${e} cannot be tolerated`);
    const step = this.step;
    this.ops.push({
      code,
      name,
      get text() {
        return show();
      },
      args,
      dst,
      ok,
      retryEagain,
      step,
    });
    return this.ops.length - 1;
  }

  // ---- output -----------------------------------------------------------------------------

  /** One line per op, with the stage markers: what golden tests compare. */
  listing(errnoName: (e: number) => string = String): string {
    const out: string[] = [];
    let next = 0;
    this.ops.forEach((op, i) => {
      for (; next < this.stages.length && this.stages[next][0] <= i; next++) out.push(`== ${this.stages[next][1]}`);
      const ok = op.ok.length ? `  [ok ${op.ok.map(errnoName).join(",")}]` : "";
      const retry = op.retryEagain ? "  [again on EAGAIN]" : "";
      out.push(`${String(i).padStart(4)}  ${op.text}${op.dst ? ` -> ${op.dst.name}` : ""}${ok}${retry}`);
    });
    return `${out.join("\n")}\n`;
  }

  /**
   * The binary tape. `alloc` provides writable memory and its address (ffi/executor/load.ts), since the
   * executor follows absolute pointers. With `trace`, room for one result per op follows the ops.
   * `relocs`, when given, collects the offset of every absolute address written (core/tape/frozen.ts
   * encodes at address 0 and adds the real one when it loads the tape from the cache).
   */
  encode(alloc: (size: number) => { bytes: Uint8Array; address: number }, trace: boolean, relocs?: number[]): { bytes: Uint8Array; address: number } {
    this.checkJumps();
    const regOf = this.allocate();
    const align = (n: number) => (n + 7) & ~7;
    const opsAt = HEADER.size;
    const resultsAt = opsAt + this.ops.length * OP_BYTES;
    let at = resultsAt + (trace ? this.ops.length * RESULT_BYTES : 0);
    const itemAt: number[] = [];
    for (const item of this.items) {
      itemAt.push(at);
      at = align(at + item.bytes.length);
    }
    const { bytes, address } = alloc(at);
    const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
    const addr = (p: Ptr) => BigInt(address + itemAt[p.item] + p.offset);
    const u64 = (off: number, v: bigint | number) => view.setBigUint64(off, BigInt.asUintN(64, BigInt(v)), true);
    const i64 = (off: number, v: bigint | number) => view.setBigInt64(off, BigInt.asIntN(64, BigInt(v)), true);
    const reloc = (off: number) => relocs?.push(off);

    view.setUint32(HEADER.magic, TAPE_MAGIC, true);
    view.setUint32(HEADER.version, TAPE_VERSION, true);
    u64(HEADER.cloneFlags, this.cloneFlags);
    i64(HEADER.cgroupFd, this.cgroupFd);
    i64(HEADER.reportFd, this.reportFd);
    u64(HEADER.nops, this.ops.length);
    u64(HEADER.ops, address + opsAt);
    reloc(HEADER.ops);
    u64(HEADER.results, trace ? address + resultsAt : 0);
    if (trace) reloc(HEADER.results);
    u64(HEADER.stackSize, STACK_SIZE);
    i64(HEADER.pidfd, -1);
    i64(HEADER.progress, -1);

    this.ops.forEach((op, i) => {
      const o = opsAt + i * OP_BYTES;
      let regmask = 0;
      let okmask = 0n;
      for (const e of op.ok) okmask |= 1n << BigInt(e);
      view.setInt32(o + OP_FIELD.code, op.code, true);
      view.setInt16(o + OP_FIELD.dst, op.dst ? (regOf.get(op.dst) as number) : -1, true);
      op.args.forEach((a, k) => {
        let v: bigint;
        if (isReg(a)) {
          regmask |= 1 << k;
          v = BigInt(regOf.get(a) as number);
        } else if (isPtr(a)) {
          v = addr(a);
          reloc(o + OP_FIELD.a + 8 * k);
        } else if (isLabel(a)) v = BigInt(a.index as number);
        else v = BigInt(a);
        i64(o + OP_FIELD.a + 8 * k, v);
      });
      view.setUint16(o + OP_FIELD.regmask, op.retryEagain ? regmask | OP_RETRY_EAGAIN : regmask, true);
      u64(o + OP_FIELD.okmask, okmask);
    });

    this.items.forEach((item, i) => {
      bytes.set(item.bytes, itemAt[i]);
      for (const p of item.pointers) {
        u64(itemAt[i] + p.offset, addr(p.to));
        reloc(itemAt[i] + p.offset);
      }
    });
    return { bytes, address };
  }
}

/** How an fd argument prints: a register's name, AT_FDCWD, or the number. */
export function fdText(fd: Reg | number): string {
  if (typeof fd === "number") return fd === -100 ? "AT_FDCWD" : String(fd);
  return fd.name;
}

export { isLabel, isPtr, isReg };
