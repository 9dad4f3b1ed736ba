// The TypeScript side of protocol.h: the tape's binary layout and the report records. Every value
// here has its twin in protocol.h, and protocol.h is the one source: ffi/executor/build.ts writes
// protocolAsserts() (below) into out/protocol_check.h, which protocol.h includes, so the C build
// fails when a constant, a field's offset or a struct's size here differs from the header (a
// same-size reorder too). test/tape.test.ts compiles the same checks, and shows them failing on a
// reordered copy of the header.

export const TAPE_MAGIC = 0x5452534e; // "NSRT"
export const TAPE_VERSION = 1;
export const REGISTERS = 32;

/** struct nsrun_tape: field offsets in bytes. */
export const HEADER = {
  magic: 0,
  version: 4,
  cloneFlags: 8,
  cgroupFd: 16,
  reportFd: 24,
  nops: 32,
  ops: 40,
  results: 48,
  stackSize: 56,
  stack: 64,
  pidfd: 72,
  progress: 80,
  size: 88,
} as const;

/** struct nsrun_op: field offsets in bytes (code i32, dst i16, regmask u16, okmask u64, a[6] i64). */
export const OP_FIELD = { code: 0, dst: 4, regmask: 6, okmask: 8, a: 16 } as const;
export const OP_BYTES = 64;
/** struct nsrun_result: field offsets in bytes (ret i64, start_ns u64, end_ns u64). */
export const RESULT_FIELD = { ret: 0, startNs: 8, endNs: 16 } as const;
export const RESULT_BYTES = 24;

/**
 * Bit 15 of an op's regmask: a syscall failing with EAGAIN runs again, EAGAIN_TRIES times in all
 * (openat2(2) scoped to a root, whose walk of ".." a mount or rename anywhere on the host raced).
 */
export const OP_RETRY_EAGAIN = 0x8000;
export const EAGAIN_TRIES = 64;

/** Control instructions: the only ops that are not syscalls. */
export const OP = {
  JUMP: -1,
  JUMP_IF: -2,
  FDPATH: -3,
  LOAD: -4,
  STORE: -5,
  FAIL: -6,
  /** execve(2) the first of a list of paths that starts (only the stub runs it: a sealed launch). */
  EXEC: -7,
} as const;

/** Where the stub maps a sealed launch's tape (protocol.h): its pointers are computed for it. */
export const SEALED_TAPE_ADDRESS = 0x4000000000;

export const CMP = { EQ: 0, NE: 1, LT: 2, GE: 3, ANY: 4 } as const;
export type Cmp = keyof typeof CMP;

/** struct nsrun_report: field offsets in bytes (kind i32, index i32, value i64). */
export const REPORT_FIELD = { kind: 0, index: 4, value: 8 } as const;
export const REPORT_BYTES = 16;
export const REPORT = {
  FAILED: 1,
  SYNC: 2,
  EXEC_FAILED: 3,
  ACK: 4,
  /** value: the PID of the process a tape forked (OCI exec, after joining a PID namespace). */
  PID: 5,
  /** An OCI hook the tape ran failed: index says which and why, value the status, signal or errno (core/oci/emit.ts). */
  HOOK: 6,
} as const;

export const EXIT = { SETUP_FAILED: 125, CANNOT_EXECUTE: 126, NOT_FOUND: 127 } as const;

/** A FAILED record's value when the executor refused the tape itself (protocol.h NSRUN_BAD_*). */
export const BAD = { REGISTER: -1, JUMP: -2, OP: -3 } as const;
const BAD_TEXT: Record<number, string> = {
  [BAD.REGISTER]: "a register out of range",
  [BAD.JUMP]: "a jump that does not go forward",
  [BAD.OP]: "an unknown control op",
};

/** What a FAILED record's negative value says is wrong with the tape, or null for an errno. */
export function badTape(value: number): string | null {
  return value < 0 ? (BAD_TEXT[value] ?? `bad tape ${value}`) : null;
}

export interface Report {
  kind: number;
  index: number;
  value: number;
}

export function decodeReport(bytes: Uint8Array, offset = 0): Report {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, REPORT_BYTES);
  return { kind: v.getInt32(REPORT_FIELD.kind, true), index: v.getInt32(REPORT_FIELD.index, true), value: Number(v.getBigInt64(REPORT_FIELD.value, true)) };
}

export function encodeReport(r: Report): Uint8Array {
  const b = new Uint8Array(REPORT_BYTES);
  const v = new DataView(b.buffer);
  v.setInt32(REPORT_FIELD.kind, r.kind, true);
  v.setInt32(REPORT_FIELD.index, r.index, true);
  v.setBigInt64(REPORT_FIELD.value, BigInt(r.value), true);
  return b;
}

/** The C name of a field named here in camelCase: cloneFlags -> clone_flags. */
const cName = (field: string) => field.replace(/[A-Z]/g, (c) => `_${c.toLowerCase()}`);

/**
 * C11 static assertions that protocol.h has every value and offset this file uses: the build
 * (out/protocol_check.h) and test/tape.test.ts compile them against the header.
 */
export function protocolAsserts(): string {
  const lines: string[] = [];
  const check = (expr: string, why: string) => lines.push(`_Static_assert(${expr}, ${JSON.stringify(why)});`);
  const struct = (name: string, fields: Record<string, number>, size: number) => {
    for (const [field, offset] of Object.entries(fields)) {
      if (field === "size") continue;
      check(`__builtin_offsetof(struct ${name}, ${cName(field)}) == ${offset}`, `protocol.ts puts ${name}.${cName(field)} at byte ${offset}`);
    }
    check(`sizeof(struct ${name}) == ${size}`, `protocol.ts says struct ${name} is ${size} bytes`);
  };
  struct("nsrun_tape", HEADER, HEADER.size);
  struct("nsrun_op", OP_FIELD, OP_BYTES);
  struct("nsrun_result", RESULT_FIELD, RESULT_BYTES);
  struct("nsrun_report", REPORT_FIELD, REPORT_BYTES);
  const values: Record<string, number> = { TAPE_MAGIC, TAPE_VERSION, REGISTERS, OP_RETRY_EAGAIN, EAGAIN_TRIES };
  for (const [prefix, table] of [["OP", OP], ["CMP", CMP], ["REPORT", REPORT], ["EXIT", EXIT], ["BAD", BAD]] as const) {
    for (const [name, v] of Object.entries(table)) values[`${prefix}_${name}`] = v;
  }
  for (const [name, v] of Object.entries(values)) check(`NSRUN_${name} == ${v}`, `protocol.ts says NSRUN_${name} is ${v}`);
  return `// Written by ffi/executor/build.ts from ffi/executor/protocol.ts: do not edit.\n${lines.join("\n")}\n`;
}
