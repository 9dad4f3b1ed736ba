// protocol.h: the contract between nsrun's TypeScript and its two small C programs.
// ffi/executor/protocol.ts mirrors every value here; the build checks that the two agree (the
// static assertions in out/protocol_check.h, written from protocol.ts), and so does test/tape.test.ts.
//
// The tape: what TypeScript (core/tape/) compiles a box into and executor.c runs. One buffer:
//   struct nsrun_tape | struct nsrun_op[nops] | struct nsrun_result[nops] (when traced) | data
// Pointers in it are absolute addresses: in the nsrun process when executor.c runs it in a child
// that shares that process's memory (CLONE_VM); at NSRUN_SEALED_TAPE_ADDRESS when the stub maps it
// from a memfd (a sealed launch). The runner only reads the tape and writes its own stack, the
// results and the scratch slots TypeScript reserved for it.
//
// The report pipe: fixed 16-byte records (struct nsrun_report) from the box's first process (the
// executor, then the stub) to the host. End of file with no FAILED record means the box's command
// has started: every copy of the pipe's write end is close-on-exec.
#ifndef NSRUN_PROTOCOL_H
#define NSRUN_PROTOCOL_H

#define NSRUN_TAPE_MAGIC 0x5452534eu /* "NSRT" */
#define NSRUN_TAPE_VERSION 1u
#define NSRUN_REGISTERS 32

// One instruction, 64 bytes. code >= 0: the syscall with that number, its result into register
// `dst` (-1: dropped). Bit i of `regmask`: a[i] names a register whose value is passed instead.
// Bit e of `okmask`: failing with errno e (< 64) is tolerated; the register then holds -e.
// Any other failure ends the tape: a FAILED record (op index, errno) and exit status 125.
struct nsrun_op {
  int code;
  short dst;
  unsigned short regmask;
  unsigned long long okmask;
  long long a[6];
};

// Bit 15 of `regmask` names no register: a syscall op with RETRY_EAGAIN that fails with EAGAIN runs
// again, at most EAGAIN_TRIES times in all. openat2(2) with RESOLVE_IN_ROOT or RESOLVE_BENEATH fails
// so when a mount or a rename anywhere on the host raced its walk of a ".." (the kernel cannot then
// be sure the walk stayed inside), and its man page says to try again: on a busy host (other boxes,
// podman) that is a matter of time, not an attack that a retry would let through.
#define NSRUN_OP_RETRY_EAGAIN 0x8000
#define NSRUN_EAGAIN_TRIES 64

// Control instructions (negative codes). Only these are not syscalls.
#define NSRUN_OP_JUMP -1    // go to op a0
#define NSRUN_OP_JUMP_IF -2 // if (a0 CMP a2) go to op a3; CMP is a1, below
#define NSRUN_OP_FDPATH -3  // write "/proc/self/fd/<a0>" and the string at a2 into the 64-byte slot at a1
#define NSRUN_OP_LOAD -4    // dst = the a1-byte (1, 4 or 8) signed value at address a0
#define NSRUN_OP_STORE -5   // store a0 as an a2-byte (4 or 8) value at address a1
#define NSRUN_OP_FAIL -6    // end the tape as if this op had failed with errno a0
// Start the command, as execvp(3) would: execve(2) each of the a1 paths at a2 (char **) in order,
// with argv a3 and envp a4, past ENOENT, ENOTDIR and EACCES; if none starts, an EXEC_FAILED record
// to report fd a0 and exit 126 or 127. Nothing else is called, so a seccomp filter loaded just
// before it needs to allow only execve(2), write(2) and exit_group(2). Only the stub runs it.
#define NSRUN_OP_EXEC -7

#define NSRUN_CMP_EQ 0
#define NSRUN_CMP_NE 1
#define NSRUN_CMP_LT 2
#define NSRUN_CMP_GE 3
#define NSRUN_CMP_ANY 4 // (a0 & a2) != 0

// Filled in for each op that ran when the tape is traced (results != 0).
struct nsrun_result {
  long long ret;
  unsigned long long start_ns, end_ns; // CLOCK_MONOTONIC
};

struct nsrun_tape {
  unsigned int magic, version;
  unsigned long long clone_flags; // CLONE_NEW* for clone3(2); CLONE_VM is added by the executor
  long long cgroup_fd;            // >= 0: CLONE_INTO_CGROUP this cgroup v2 directory
  long long report_fd;            // the report pipe's write end
  unsigned long long nops;
  unsigned long long ops;     // struct nsrun_op *
  unsigned long long results; // struct nsrun_result *, or 0
  unsigned long long stack_size;
  // Written by nsrun_spawn:
  unsigned long long stack; // the child's stack mapping (guard page first), for nsrun_release
  long long pidfd;          // CLONE_PIDFD
  // Written by the child: the index of the op it is running. Tells the host how far a child that a
  // signal killed got (the last op, the stub's execveat, means it started).
  long long progress;
};

// A sealed launch (stub.c, "nsrun tape FD") maps the tape's memfd at this address, which the tape's
// pointers were computed for: far above a static, non-PIE program and its brk heap, below the
// 39-bit address space of the smallest arm64 configuration.
#define NSRUN_SEALED_TAPE_ADDRESS 0x4000000000

struct nsrun_report {
  int kind;
  int index;
  long long value;
};

#define NSRUN_REPORT_FAILED 1      // index: the op, value: errno, or one of NSRUN_BAD_* below
#define NSRUN_REPORT_SYNC 2        // index: the op, value: the sync point's id; the host answers on the sync pipe
#define NSRUN_REPORT_EXEC_FAILED 3 // from the stub: index: the candidate path, value: errno
#define NSRUN_REPORT_ACK 4         // host -> box, on the sync pipe: carry on
#define NSRUN_REPORT_PID 5         // value: the PID of a process the tape forked (OCI exec: the process that joined the PID namespace)
#define NSRUN_REPORT_HOOK 6        // an OCI hook the tape ran failed: index and value as core/oci/emit.ts encodes them (which hook, why)

// A FAILED record's value when the tape itself is wrong (a bug in nsrun's compiler, which checks the
// same when it encodes): the executor checks every op before it runs the first, and runs none.
#define NSRUN_BAD_REGISTER -1 // an op names a register outside 0..NSRUN_REGISTERS-1 (dst: or -1)
#define NSRUN_BAD_JUMP -2     // a jump does not go forward to an op of the tape or its end, or its target is a register
#define NSRUN_BAD_OP -3       // a control op (negative code) protocol.h does not define

// Exit statuses of the box's first process when setup fails (the host reports, not this status).
#define NSRUN_EXIT_SETUP_FAILED 125
#define NSRUN_EXIT_CANNOT_EXECUTE 126
#define NSRUN_EXIT_NOT_FOUND 127

// protocol.ts's offsets and values, asserted against the above (written by build.ts): a change
// here that protocol.ts does not follow fails the build.
#include "out/protocol_check.h"

#endif
