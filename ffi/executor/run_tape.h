// run_tape.h: the tape's interpreter, shared by the two programs that run tapes (see protocol.h):
//   executor.c   in a process clone3(2) made with CLONE_VM, on nsrun's own memory (a box's first
//                process, alone in namespaces of its own until it execs);
//   stub.c       in the stub, exec'd from a sealed memfd before the process enters any namespace
//                ("nsrun tape FD"): OCI create and exec, whose process shares namespaces with
//                processes that must never reach it (docs/security.md).
// Included once by each; everything here is static. Ops are generic: no path, flag or decision of a
// box is written here.
#ifndef NSRUN_RUN_TAPE_H
#define NSRUN_RUN_TAPE_H
#include "protocol.h"
#include "sys.h"

#define CLOCK_MONOTONIC 1
#define EINVAL 22
#ifndef EAGAIN
#define EAGAIN 11
#endif

#ifndef NSRUN_TAPE_EXEC
// Only the stub runs NSRUN_OP_EXEC (it never returns on success): elsewhere it fails.
static long tape_exec(const long long *a) {
  (void)a;
  return -EINVAL;
}
#endif

__attribute__((noreturn)) static void die(long long report_fd, long index, long err) {
  struct nsrun_report r;
  r.kind = NSRUN_REPORT_FAILED;
  r.index = (int)index;
  r.value = err;
  sys3(SYS_write, report_fd, &r, sizeof r);
  for (;;) sys1(SYS_exit_group, NSRUN_EXIT_SETUP_FAILED);
}

static unsigned long long now_ns(void) {
  struct timespec64 ts;
  sys2(SYS_clock_gettime, CLOCK_MONOTONIC, &ts);
  return (unsigned long long)ts.sec * 1000000000ULL + (unsigned long long)ts.nsec;
}

static int compare(long long v, long long cmp, long long operand) {
  switch (cmp) {
  case NSRUN_CMP_EQ: return v == operand;
  case NSRUN_CMP_NE: return v != operand;
  case NSRUN_CMP_LT: return v < operand;
  case NSRUN_CMP_GE: return v >= operand;
  case NSRUN_CMP_ANY: return (v & operand) != 0;
  }
  return 0;
}

// "/proc/self/fd/<fd><suffix>" into a 64-byte slot.
static long fdpath(char *out, long long fd, const char *suffix) {
  const char *pre = "/proc/self/fd/";
  char digits[20];
  int n = 0, used = 0;
  if (fd < 0) return -9; // EBADF
  while (*pre) out[used++] = *pre++;
  do digits[n++] = (char)('0' + fd % 10), fd /= 10; while (fd);
  while (n) out[used++] = digits[--n];
  if (suffix)
    while (*suffix && used < 63) out[used++] = *suffix++;
  if (suffix && *suffix) return -36; // ENAMETOOLONG
  out[used] = 0;
  return 0;
}

// 0 when every op of the tape is one this runner can run, else the NSRUN_BAD_* of the first that
// is not (*at: its index). Registers in range, every jump forward to an op or the tape's end, known
// control ops: a compiler bug is reported before any syscall, never masked.
static long check_tape(const struct nsrun_op *ops, unsigned long long nops, unsigned long long *at) {
  unsigned long long i;
  int k;
  for (i = 0; i < nops; i++) {
    const struct nsrun_op *o = &ops[i];
    int target = o->code == NSRUN_OP_JUMP ? 0 : o->code == NSRUN_OP_JUMP_IF ? 3 : -1;
    *at = i;
    if (o->dst < -1 || o->dst >= NSRUN_REGISTERS) return NSRUN_BAD_REGISTER;
    if ((o->regmask & ~NSRUN_OP_RETRY_EAGAIN) >> 6) return NSRUN_BAD_REGISTER;
    for (k = 0; k < 6; k++)
      if ((o->regmask >> k) & 1 && (o->a[k] < 0 || o->a[k] >= NSRUN_REGISTERS)) return NSRUN_BAD_REGISTER;
    if (o->code < NSRUN_OP_EXEC) return NSRUN_BAD_OP; // the lowest control code
    if (target >= 0 && ((o->regmask >> target) & 1 || o->a[target] <= (long long)i || (unsigned long long)o->a[target] > nops)) return NSRUN_BAD_JUMP;
  }
  return 0;
}

__attribute__((noreturn)) static void run_tape(void *arg) {
  struct nsrun_tape *t = (struct nsrun_tape *)arg;
  const struct nsrun_op *ops = (const struct nsrun_op *)(unsigned long)t->ops;
  struct nsrun_result *results = (struct nsrun_result *)(unsigned long)t->results;
  long long reg[NSRUN_REGISTERS];
  struct kernel_sigaction dfl = {0, 0, 0, 0};
  unsigned long long i;
  int k;

  // Bun's handlers must never run in this process: every disposition back to SIG_DFL (SIGKILL and
  // SIGSTOP cannot have one), while all signals are still blocked.
  for (k = 1; k <= NSIG; k++)
    if (k != SIGKILL && k != SIGSTOP) sys4(SYS_rt_sigaction, k, &dfl, 0, 8);
  for (k = 0; k < NSRUN_REGISTERS; k++) reg[k] = -1;
  {
    unsigned long long at = 0;
    long bad = check_tape(ops, t->nops, &at);
    if (bad) die(t->report_fd, (long)at, bad);
  }

  for (i = 0; i < t->nops;) {
    const struct nsrun_op *o = &ops[i];
    long long a[6];
    long long r = 0;
    unsigned long long next = i + 1;
    for (k = 0; k < 6; k++) a[k] = (o->regmask >> k) & 1 ? reg[o->a[k]] : o->a[k]; // in range: check_tape
    t->progress = (long long)i;
    if (results) results[i].start_ns = now_ns();
    if (o->code >= 0) {
      int tries = 0;
      do r = sys6(o->code, a[0], a[1], a[2], a[3], a[4], a[5]);
      while (r == -EAGAIN && (o->regmask & NSRUN_OP_RETRY_EAGAIN) && ++tries < NSRUN_EAGAIN_TRIES);
    } else {
      switch (o->code) {
      case NSRUN_OP_JUMP: next = (unsigned long long)a[0]; break;
      case NSRUN_OP_JUMP_IF:
        if (compare(a[0], a[1], a[2])) next = (unsigned long long)a[3];
        break;
      case NSRUN_OP_FDPATH: r = fdpath((char *)(unsigned long)a[1], a[0], (const char *)(unsigned long)a[2]); break;
      case NSRUN_OP_LOAD:
        if (a[1] == 1) r = *(const signed char *)(unsigned long)a[0];
        else if (a[1] == 4) r = *(const int *)(unsigned long)a[0];
        else r = *(const long long *)(unsigned long)a[0];
        break;
      case NSRUN_OP_STORE:
        if (a[2] == 4) *(int *)(unsigned long)a[1] = (int)a[0];
        else *(long long *)(unsigned long)a[1] = a[0];
        break;
      case NSRUN_OP_FAIL: r = -a[0]; break;
      case NSRUN_OP_EXEC: r = tape_exec(a); break;
      default: r = -EINVAL; // not reached: check_tape
      }
    }
    if (results) {
      results[i].ret = r;
      results[i].end_ns = now_ns();
    }
    // A syscall, fdpath or fail op may fail; a loaded value is only a value.
    if (o->code != NSRUN_OP_LOAD && IS_ERR(r)) {
      long e = -r;
      if (o->code == NSRUN_OP_FAIL || e >= 64 || !((o->okmask >> e) & 1)) die(t->report_fd, (long)i, e);
    }
    if (o->dst >= 0) reg[o->dst] = r;
    i = next;
  }
  // The tape ran out without an execve: a compiler error in TypeScript, reported as such.
  die(t->report_fd, (long)t->nops, 0);
}

#endif
