// Hardening, pure parts: the seccomp BPF compiler and its default profile, OCI/docker profile
// parsing, capabilities, rlimits, and how planBox turns [security]/[limits] into a plan. The BPF is
// run with evaluate(); its structure is checked against the kernel's own rules for classic BPF.
import { describe, expect, test } from "bun:test";
import { capabilityMask, capabilityNumber, CAPABILITIES, DEFAULT_CAPABILITIES, emitBoundingSet, emitCapabilitySets } from "../core/stages/capabilities";
import { parseConfig } from "../core/stages/config";
import { ConfigError } from "../core/errors";
import { DEFAULT_MASKED, DEFAULT_READONLY, type HostFacts, planBox } from "../core/stages/plan";
import { emitRlimits, planRlimits, rlimitProblem } from "../core/stages/rlimits";
import { type Action, AUDIT_ARCH_X86_64, actionValue, type CmpOp, compileProfile, DEFAULT_DENIED, defaultProfile, evaluate, type Insn, type Profile, RET } from "../core/stages/seccomp";
import { ParseProfileError, parseProfile } from "../core/stages/seccomp-profile";
import * as F from "../ffi/flags";
import { FFI_CALLS_ARM64, otherSyscallsArm64 } from "../ffi/syscalls-arm64";
import { FFI_CALLS_X86_64, otherSyscallsX86_64 } from "../ffi/syscalls-x86_64";
import { SYS, syscallTable } from "../ffi/syscalls";
import { Tape } from "../core/tape/tape";

const NR = syscallTable("x64");

const EPERM = RET.errno(1);
const CLONE_NEWUSER = 0x10000000n;
const U64 = (1n << 64n) - 1n;
const DEFAULT = compileProfile(defaultProfile());
const call = (name: string, args: bigint[] = [], arch?: number) => evaluate(DEFAULT, { nr: NR[name], args, arch });

describe("the syscall table", () => {
  test("spot-checks against <asm/unistd_64.h>", () => {
    const known = { read: 0, write: 1, ioctl: 16, getpid: 39, socket: 41, clone: 56, execve: 59, ptrace: 101, mount: 165, exit_group: 231, openat: 257, unshare: 272, setns: 308, bpf: 321, open_tree: 428, clone3: 435, mount_setattr: 442 };
    for (const [name, n] of Object.entries(known)) expect([name, NR[name]]).toEqual([name, n]);
    expect(new Set(Object.values(NR)).size).toBe(Object.keys(NR).length);
  });

  test("ffi/'s own calls (SYS, made apart for a fast start) are each architecture's numbers, and in its whole table", () => {
    for (const [arch, calls, others] of [["x64", FFI_CALLS_X86_64, otherSyscallsX86_64()], ["arm64", FFI_CALLS_ARM64, otherSyscallsArm64()]] as const) {
      const whole = syscallTable(arch);
      expect(Object.keys(calls).length).toBeGreaterThan(30);
      for (const [name, n] of Object.entries(calls)) expect([arch, name, whole[name]]).toEqual([arch, name, n]);
      // No name in both parts (the join would keep one silently), and no number twice.
      expect(Object.keys(whole).length).toBe(Object.keys(calls).length + Object.keys(others).length);
      expect(new Set(Object.values(whole)).size).toBe(Object.keys(whole).length);
    }
    expect(Object.keys(FFI_CALLS_ARM64).sort()).toEqual(Object.keys(FFI_CALLS_X86_64).sort());
    expect(SYS).toBe(process.arch === "arm64" ? FFI_CALLS_ARM64 : FFI_CALLS_X86_64);
    expect([SYS.read, SYS.openat2, syscallTable("arm64").openat2, syscallTable("arm64").read]).toEqual([0, 437, 437, 63]);
  });
});

describe("default profile", () => {
  test("every DEFAULT_DENIED syscall gets EPERM", () => {
    for (const name of DEFAULT_DENIED) expect([name, call(name)]).toEqual([name, EPERM]);
  });

  test("ordinary syscalls are allowed", () => {
    const ordinary: Array<[string, bigint[]]> = [
      ["read", [3n, 0n, 10n]], ["write", [1n]], ["openat", [0xffffff9cn]], ["execve", []], ["mmap", [0n, 4096n]],
      ["clone", [0n]], ["unshare", [0x20000n]], ["ioctl", [0n, 0x5401n]], ["socket", [2n, 1n]], ["getpid", []], ["exit_group", [0n]],
    ];
    for (const [name, args] of ordinary) expect([name, call(name, args)]).toEqual([name, RET.ALLOW]);
  });

  test("unshare and clone with CLONE_NEWUSER are refused, other flags are not", () => {
    for (const name of ["unshare", "clone"]) {
      expect(call(name, [CLONE_NEWUSER])).toBe(EPERM);
      expect(call(name, [CLONE_NEWUSER | 0x20000n | 0x4000000n])).toBe(EPERM);
      expect(call(name, [0xffffffff_ffffffffn])).toBe(EPERM);
      expect(call(name, [0xffffffffn & ~CLONE_NEWUSER])).toBe(RET.ALLOW);
      expect(call(name, [0xffffffff_00000000n | 0x60000000n | 0x11n])).toBe(RET.ALLOW);
    }
  });

  test("clone3 gets ENOSYS so libc falls back to clone", () => {
    expect(call("clone3", [0n, 88n])).toBe(RET.errno(38));
  });

  test("TIOCSTI and TIOCLINUX are refused, also with junk in the upper 32 bits", () => {
    for (const req of [0x5412n, 0x541cn, 0xffffffff_00005412n, 0x00000001_0000541cn])
      expect([req, call("ioctl", [0n, req])]).toEqual([req, EPERM]);
    expect(call("ioctl", [0n, 0x5413n])).toBe(RET.ALLOW);
    expect(call("ioctl", [0n, 0x5412_0000n])).toBe(RET.ALLOW);
    // the request is argument 1, not 0: fd 0x5412 is fine
    expect(call("ioctl", [0x5412n, 0x5401n])).toBe(RET.ALLOW);
  });

  test("another architecture kills the process; x32 numbers get EPERM", () => {
    expect(call("read", [], 0x40000003)).toBe(RET.KILL_PROCESS);
    expect(call("getpid", [], 0xc00000b7)).toBe(RET.KILL_PROCESS);
    expect(call("read", [], AUDIT_ARCH_X86_64)).toBe(RET.ALLOW);
    expect(evaluate(DEFAULT, { nr: 0x40000000 + NR.read })).toBe(EPERM);
    expect(evaluate(DEFAULT, { nr: 0x40000000 + NR.getpid })).toBe(EPERM);
  });

  test("the program is one the kernel accepts: short, in-range jumps, ends in RET", () => {
    expect(DEFAULT.length).toBeLessThan(4096);
    DEFAULT.forEach(([code, jt, jf, k], pc) => {
      if ((code & 0x07) === 0x05 && code !== 0x05) {
        expect(jt >= 0 && jt <= 255 && jf >= 0 && jf <= 255).toBe(true);
        expect(pc + 1 + Math.max(jt, jf)).toBeLessThan(DEFAULT.length);
      }
      if (code === 0x20) expect(k % 4 === 0 && k < 64).toBe(true);
    });
    expect(DEFAULT[DEFAULT.length - 1][0]).toBe(0x06);
    expect(DEFAULT.slice(0, 3)).toEqual([[0x20, 0, 0, 4], [0x15, 1, 0, AUDIT_ARCH_X86_64], [0x06, 0, 0, 0x80000000]]);
  });
});

/** What each comparison means, on unsigned 64-bit values, as the OCI spec and libseccomp define it. */
function reference(op: CmpOp, arg: bigint, value: bigint, valueTwo: bigint): boolean {
  switch (op) {
    case "EQ": return arg === value;
    case "NE": return arg !== value;
    case "LT": return arg < value;
    case "LE": return arg <= value;
    case "GT": return arg > value;
    case "GE": return arg >= value;
    case "MASKED_EQ": return (arg & value) === valueTwo;
  }
}

describe("compileProfile", () => {
  const GRID = [
    0n, 1n, 2n, 0x7fffffffn, 0x80000000n, 0xfffffffen, 0xffffffffn, 0x100000000n, 0x100000001n, 0x1_fffffffen, 0x1_ffffffffn,
    0x2_00000000n, 0x80000000_00000000n, 0xffffffff_00000000n, 0xffffffff_fffffffen, U64,
  ];
  const OPS: CmpOp[] = ["EQ", "NE", "LT", "LE", "GT", "GE", "MASKED_EQ"];
  const one = (op: CmpOp, index: number, value: bigint, valueTwo = 0n): Insn[] =>
    compileProfile({ defaultAction: { kind: "errno", errno: 99 }, rules: [{ nrs: [NR.read], action: { kind: "allow" }, args: [{ index, op, value, valueTwo }] }] });

  test("every op agrees with a BigInt reference over a grid of 64-bit values", () => {
    let checked = 0;
    for (const op of OPS)
      for (const value of GRID) {
        const twos = op === "MASKED_EQ" ? [0n, 1n, value & 0xffff0000_ffff0000n, value, value | 1n] : [0n];
        for (const valueTwo of twos) {
          const index = checked % 6;
          const prog = one(op, index, value, valueTwo);
          for (const arg of GRID) {
            // the other arguments hold the complement, so reading the wrong one shows
            const args = Array.from({ length: 6 }, (_, i) => (i === index ? arg : ~arg & U64));
            const want = reference(op, arg, value, valueTwo) ? RET.ALLOW : RET.errno(99);
            const got = evaluate(prog, { nr: NR.read, args });
            if (got !== want) throw new Error(`${op} arg=${arg.toString(16)} value=${value.toString(16)} valueTwo=${valueTwo.toString(16)}: got ${got.toString(16)}`);
            checked++;
          }
        }
      }
    expect(checked).toBe(6 * GRID.length ** 2 + 5 * GRID.length ** 2);
  });

  test("named edge cases: high words decide first, then low words", () => {
    const holds = (op: CmpOp, arg: bigint, value: bigint) => evaluate(one(op, 0, value), { nr: NR.read, args: [arg] }) === RET.ALLOW;
    expect(holds("LT", 0xffffffffn, 0x100000000n)).toBe(true); // low word bigger, high word smaller
    expect(holds("GT", 0x100000000n, 0xffffffffn)).toBe(true);
    expect(holds("LT", 0x1_00000005n, 0x1_00000006n)).toBe(true);
    expect(holds("LE", 0x1_00000006n, 0x1_00000006n)).toBe(true);
    expect(holds("LT", 0x1_00000006n, 0x1_00000006n)).toBe(false);
    expect(holds("GE", 0x1_00000006n, 0x1_00000007n)).toBe(false);
    expect(holds("NE", 0x1_00000006n, 0x2_00000006n)).toBe(true);
    expect(holds("EQ", 0x6n, 0x1_00000006n)).toBe(false);
    expect(holds("EQ", U64, U64)).toBe(true);
  });

  test("conditions AND, several syscalls share a rule, first match wins, else the default", () => {
    const profile: Profile = {
      defaultAction: { kind: "errno", errno: 13 },
      rules: [
        { nrs: [NR.write, NR.read], action: { kind: "allow" }, args: [{ index: 0, op: "EQ", value: 1n, valueTwo: 0n }, { index: 2, op: "LT", value: 100n, valueTwo: 0n }] },
        { nrs: [NR.read], action: { kind: "errno", errno: 5 }, args: [] },
        { nrs: [NR.read], action: { kind: "allow" }, args: [] },
      ],
    };
    const p = compileProfile(profile);
    expect(evaluate(p, { nr: NR.write, args: [1n, 0n, 99n] })).toBe(RET.ALLOW);
    expect(evaluate(p, { nr: NR.read, args: [1n, 0n, 99n] })).toBe(RET.ALLOW);
    expect(evaluate(p, { nr: NR.write, args: [1n, 0n, 100n] })).toBe(RET.errno(13)); // second condition fails
    expect(evaluate(p, { nr: NR.write, args: [2n, 0n, 99n] })).toBe(RET.errno(13)); // first condition fails
    expect(evaluate(p, { nr: NR.read, args: [2n, 0n, 99n] })).toBe(RET.errno(5)); // falls to rule 2, not rule 3
    expect(evaluate(p, { nr: NR.getpid })).toBe(RET.errno(13));
  });

  test("actions map to SECCOMP_RET_* values", () => {
    const cases: Array<[Action, number]> = [
      [{ kind: "allow" }, 0x7fff0000], [{ kind: "errno", errno: 1 }, 0x00050001], [{ kind: "errno", errno: 4095 }, 0x00050fff],
      [{ kind: "kill_process" }, 0x80000000], [{ kind: "kill_thread" }, 0], [{ kind: "trap" }, 0x00030000], [{ kind: "log" }, 0x7ffc0000],
    ];
    for (const [action, want] of cases) {
      expect(actionValue(action)).toBe(want);
      expect(evaluate(compileProfile({ defaultAction: { kind: "allow" }, rules: [{ nrs: [NR.getpid], action, args: [] }] }), { nr: NR.getpid })).toBe(want);
      expect(evaluate(compileProfile({ defaultAction: action, rules: [] }), { nr: NR.getpid })).toBe(want);
    }
  });
});

describe("parseProfile", () => {
  const DOCKER = JSON.stringify({
    defaultAction: "SCMP_ACT_ERRNO",
    defaultErrnoRet: 1,
    architectures: ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86"],
    syscalls: [
      { names: ["read", "write", "getpid"], action: "SCMP_ACT_ALLOW" },
      { names: ["personality"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, value: 0xffff00, valueTwo: 0x20000, op: "SCMP_CMP_MASKED_EQ" }] },
      { names: ["mount"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_ADMIN"] } },
      { names: ["chroot"], action: "SCMP_ACT_ALLOW", includes: { caps: ["CAP_SYS_CHROOT"] } },
      { names: ["ptrace"], action: "SCMP_ACT_ALLOW", excludes: { caps: ["CAP_SYS_PTRACE"] } },
      { names: ["sync_file_range2"], action: "SCMP_ACT_ALLOW", includes: { arches: ["arm64"] } },
      { names: ["arch_prctl"], action: "SCMP_ACT_ALLOW", includes: { arches: ["amd64", "x32"] } },
      { name: "kill", action: "SCMP_ACT_KILL_PROCESS" },
    ],
  });

  test("reads a docker-style profile", () => {
    const p = parseProfile(DOCKER, ["CHOWN", "SYS_CHROOT"]);
    expect(p.defaultAction).toEqual({ kind: "errno", errno: 1 });
    expect(p.rules).toEqual([
      { nrs: [NR.read, NR.write, NR.getpid], action: { kind: "allow" }, args: [] },
      { nrs: [NR.personality], action: { kind: "allow" }, args: [{ index: 0, op: "MASKED_EQ", value: 0xffff00n, valueTwo: 0x20000n }] },
      { nrs: [NR.chroot], action: { kind: "allow" }, args: [] },
      { nrs: [NR.ptrace], action: { kind: "allow" }, args: [] },
      { nrs: [NR.arch_prctl], action: { kind: "allow" }, args: [] },
      { nrs: [NR.kill], action: { kind: "kill_process" }, args: [] },
    ]);
    const prog = compileProfile(p);
    expect(evaluate(prog, { nr: NR.personality, args: [0x20008n] })).toBe(RET.ALLOW);
    expect(evaluate(prog, { nr: NR.personality, args: [0x40000n] })).toBe(EPERM);
    expect(evaluate(prog, { nr: NR.mount })).toBe(EPERM);
    expect(evaluate(prog, { nr: NR.kill })).toBe(RET.KILL_PROCESS);
  });

  test("includes.caps needs the cap, excludes.caps drops the rule when present", () => {
    const names = (caps: string[]) => parseProfile(DOCKER, caps).rules.map((r) => r.nrs[0]);
    expect(names(["SYS_ADMIN", "SYS_PTRACE"])).toContain(NR.mount);
    expect(names(["SYS_ADMIN", "SYS_PTRACE"])).not.toContain(NR.ptrace);
    expect(names(["SYS_ADMIN", "SYS_PTRACE"])).not.toContain(NR.chroot);
    expect(names([])).not.toContain(NR.mount);
  });

  const where = (text: string): string => {
    try {
      parseProfile(text, []);
    } catch (e) {
      if (e instanceof ParseProfileError) return e.where;
      throw e;
    }
    throw new Error("expected a ParseProfileError");
  };
  const withRules = (...syscalls: unknown[]) => JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", syscalls });

  test("errors name the JSON path", () => {
    expect(where("{not json")).toBe("");
    expect(where("[]")).toBe("");
    expect(where(withRules({ names: ["read"], action: "SCMP_ACT_ALLOW" }, { names: ["no_such_call"], action: "SCMP_ACT_ALLOW" }))).toBe("syscalls[1].names[0]");
    expect(where(withRules({ names: ["read"], action: "SCMP_ACT_NOPE" }))).toBe("syscalls[0].action");
    expect(where(JSON.stringify({ defaultAction: "SCMP_ACT_NOPE" }))).toBe("defaultAction");
    expect(where(withRules({ names: ["read"], action: "SCMP_ACT_ALLOW", args: [{ index: 0, op: "SCMP_CMP_LIKE", value: 1 }] }))).toBe("syscalls[0].args[0].op");
    expect(where(withRules({ names: ["read"], action: "SCMP_ACT_ALLOW", args: [{ index: 6, op: "SCMP_CMP_EQ", value: 1 }] }))).toBe("syscalls[0].args[0].index");
    expect(where(JSON.stringify({ defaultAction: "SCMP_ACT_ALLOW", architectures: ["SCMP_ARCH_AARCH64", "SCMP_ARCH_X86"] }))).toBe("architectures");
    expect(() => parseProfile("{", [])).toThrow(ParseProfileError);
  });

  // A JSON number is a double: 18446744073709551615 (~0) parses as 2^64, which compileProfile would
  // truncate to 0, making this EQ rule match personality(0): parseProfile refuses it.
  test("a value that is not a 64-bit number is refused, not wrapped to 0", () => {
    expect(where(withRules({ names: ["personality"], action: "SCMP_ACT_ERRNO", args: [{ index: 0, op: "SCMP_CMP_EQ", value: 18446744073709551615 }] }))).toBe("syscalls[0].args[0].value");
  });
});

describe("planBox security and limits", () => {
  const facts: HostFacts = { rootfs: "/r", sources: [] };
  const plan = (raw: Record<string, unknown>, more: Partial<HostFacts> = {}) =>
    planBox({ config: parseConfig({ rootfs: "r", ...raw }, "box.toml"), file: "box.toml", dir: "/cfg" }, { ...facts, ...more }, { uid: 1000, gid: 1000, pid: 1 });
  const keyOf = (fn: () => unknown): string | null => {
    try {
      fn();
    } catch (e) {
      if (e instanceof ConfigError) return e.key;
      throw e;
    }
    throw new Error("expected a ConfigError");
  };

  test("defaults: podman's capabilities, no_new_privs, the default filter", () => {
    const s = plan({}).security;
    expect(s.capabilities).toEqual(DEFAULT_CAPABILITIES.map((c) => CAPABILITIES.indexOf(c as (typeof CAPABILITIES)[number])).sort((a, b) => a - b));
    expect(s.capabilities).toEqual([0, 1, 3, 4, 5, 6, 7, 8, 10, 18, 31]);
    expect(s.noNewPrivileges).toBe(true);
    // The filter it plans is one that does the default profile's job (not merely the same function's output).
    expect(evaluate(s.seccomp as Insn[], { nr: NR.mount })).toBe(EPERM);
    expect(evaluate(s.seccomp as Insn[], { nr: NR.getpid })).toBe(RET.ALLOW);
    expect(plan({ security: { seccomp: "unconfined" } }).security.seccomp).toBeNull();
  });

  test("capability spellings, and an unknown one", () => {
    expect(plan({ security: { capabilities: ["cap_net_admin"] } }).security.capabilities).toEqual([12]);
    expect(plan({ security: { capabilities: ["NET_ADMIN", "CAP_NET_ADMIN", "chown"] } }).security.capabilities).toEqual([0, 12]);
    expect(capabilityNumber("CAP_NET_ADMIN")).toBe(12);
    expect(keyOf(() => plan({ security: { capabilities: ["CHOWN", "CAP_FLY"] } }))).toBe("security.capabilities[1]");
  });

  test("masked and read-only paths come last, in order, and a configured list replaces them", () => {
    const tail = plan({}).mounts.slice(-(DEFAULT_MASKED.length + DEFAULT_READONLY.length));
    expect(tail).toEqual([
      ...DEFAULT_MASKED.map((target, i) => ({ op: "mask" as const, target, origin: `security.masked_paths[${i}]` })),
      ...DEFAULT_READONLY.map((target, i) => ({ op: "readonly" as const, target, origin: `security.readonly_paths[${i}]` })),
    ]);
    const m = plan({ security: { masked_paths: ["/secret"], readonly_paths: [] } }).mounts;
    expect(m.filter((op) => op.op === "mask" || op.op === "readonly")).toEqual([{ op: "mask", target: "/secret", origin: "security.masked_paths[0]" }]);
    expect(m[m.length - 1]).toEqual({ op: "mask", target: "/secret", origin: "security.masked_paths[0]" });
    expect(keyOf(() => plan({ security: { masked_paths: ["proc/kcore"] } }))).toBe("security.masked_paths[0]");
  });

  test("a profile file is parsed; one that is not JSON is a config error", () => {
    const text = JSON.stringify({ defaultAction: "SCMP_ACT_ERRNO", syscalls: [{ names: ["read"], action: "SCMP_ACT_ALLOW" }] });
    const s = plan({ security: { seccomp: "p.json" } }, { seccompProfile: text }).security.seccomp!;
    expect(evaluate(s, { nr: NR.read })).toBe(RET.ALLOW);
    expect(evaluate(s, { nr: NR.write })).toBe(EPERM);
    expect(keyOf(() => plan({ security: { seccomp: "p.json" } }, { seccompProfile: "not json" }))).toBe("security.seccomp");
  });

  test("rlimits: core 0 by default, numbers, pairs, unlimited; bad pairs and values are refused", () => {
    expect(plan({}).rlimits).toEqual([{ name: "core", resource: F.RLIMIT.core, soft: 0, hard: 0 }]);
    const r = (limits: Record<string, unknown>) => plan({ limits }).rlimits.filter((x) => x.name === "nofile");
    expect(r({ nofile: 1024 })).toEqual([{ name: "nofile", resource: 7, soft: 1024, hard: 1024 }]);
    expect(r({ nofile: [1024, 4096] })).toEqual([{ name: "nofile", resource: 7, soft: 1024, hard: 4096 }]);
    expect(r({ nofile: "unlimited" })).toEqual([{ name: "nofile", resource: 7, soft: -1, hard: -1 }]);
    expect(r({ nofile: [1024, "unlimited"] })).toEqual([{ name: "nofile", resource: 7, soft: 1024, hard: -1 }]);
    expect(plan({ limits: { core: "unlimited" } }).rlimits).toEqual([{ name: "core", resource: 4, soft: -1, hard: -1 }]);
    expect(keyOf(() => plan({ limits: { nofile: [4096, 1024] } }))).toBe("limits.nofile");
    expect(keyOf(() => plan({ limits: { nofile: ["unlimited", 1024] } }))).toBe("limits.nofile");
    expect(keyOf(() => plan({ limits: { nproc: -1 } }))).toBe("limits.nproc");
    expect(keyOf(() => plan({ limits: { nproc: "lots" } }))).toBe("limits.nproc");
    expect(rlimitProblem([5, 5])).toBeNull();
    expect(rlimitProblem(["unlimited", "unlimited"])).toBeNull();
  });
});

describe("compiling capabilities and rlimits into tape ops", () => {
  const keep = DEFAULT_CAPABILITIES.map((c) => capabilityNumber(c)!);
  /** The ops `emit` puts on a fresh tape, as the listing spells them. */
  const ops = (emit: (t: Tape) => void) => {
    const t = new Tape("x64");
    emit(t);
    return t.ops.map((op) => op.text);
  };

  test("the bounding set drops every cap up to lastCap except the kept ones", () => {
    const dropped = ops((t) => emitBoundingSet(t, keep, 40));
    const expected = Array.from({ length: 41 }, (_, c) => c).filter((c) => !keep.includes(c));
    expect(dropped).toEqual(expected.map((c) => `prctl(PR_CAPBSET_DROP, CAP_${CAPABILITIES[c]})`));
    expect(ops((t) => emitBoundingSet(t, [], 2))).toEqual(["prctl(PR_CAPBSET_DROP, CAP_CHOWN)", "prctl(PR_CAPBSET_DROP, CAP_DAC_OVERRIDE)", "prctl(PR_CAPBSET_DROP, CAP_DAC_READ_SEARCH)"]);
  });

  test("capset keeps the mask for uid 0, nothing for others; ambient is cleared", () => {
    expect(ops((t) => emitCapabilitySets(t, keep, 0))).toEqual([
      "capset({_LINUX_CAPABILITY_VERSION_3, 0}, {eff=prm=inh=0x00000000800405fb})",
      "prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_CLEAR_ALL)",
    ]);
    expect(ops((t) => emitCapabilitySets(t, keep, 1000))[0]).toBe("capset({_LINUX_CAPABILITY_VERSION_3, 0}, {eff=prm=inh=0x0000000000000000})");
    expect(capabilityMask(keep)).toBe(0x800405fbn);
    expect(capabilityMask([40, 0])).toBe((1n << 40n) | 1n);
  });

  test("one prlimit64 per planned limit, core = 0 by default", () => {
    expect(ops((t) => emitRlimits(t, planRlimits({ nofile: [1024, 4096], stack: "unlimited" })))).toEqual([
      "prlimit64(0, RLIMIT_STACK, {RLIM_INFINITY, RLIM_INFINITY}, NULL)",
      "prlimit64(0, RLIMIT_CORE, {0, 0}, NULL)",
      "prlimit64(0, RLIMIT_NOFILE, {1024, 4096}, NULL)",
    ]);
  });
});
