// The TypeScript side of protocol.h: the tape's binary layout and the report records. Every value
// here has its twin in protocol.h; test/tape.test.ts reads the header and checks that they agree.

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

/** struct nsrun_op: code i32, dst i16, regmask u16, okmask u64, a[6] i64. */
export const OP_BYTES = 64;
/** struct nsrun_result: ret i64, start_ns u64, end_ns u64. */
export const RESULT_BYTES = 24;

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

/** struct nsrun_report: kind i32, index i32, value i64. */
export const REPORT_BYTES = 16;
export const REPORT = {
  FAILED: 1,
  SYNC: 2,
  EXEC_FAILED: 3,
  ACK: 4,
  /** value: the PID of the process a tape forked (OCI exec, after joining a PID namespace). */
  PID: 5,
  /** An OCI hook the tape ran failed: index says which and why, value the status, signal or errno (core/oci/tape.ts). */
  HOOK: 6,
} as const;

export const EXIT = { SETUP_FAILED: 125, CANNOT_EXECUTE: 126, NOT_FOUND: 127 } as const;

export interface Report {
  kind: number;
  index: number;
  value: number;
}

export function decodeReport(bytes: Uint8Array, offset = 0): Report {
  const v = new DataView(bytes.buffer, bytes.byteOffset + offset, REPORT_BYTES);
  return { kind: v.getInt32(0, true), index: v.getInt32(4, true), value: Number(v.getBigInt64(8, true)) };
}

export function encodeReport(r: Report): Uint8Array {
  const b = new Uint8Array(REPORT_BYTES);
  const v = new DataView(b.buffer);
  v.setInt32(0, r.kind, true);
  v.setInt32(4, r.index, true);
  v.setBigInt64(8, BigInt(r.value), true);
  return b;
}
