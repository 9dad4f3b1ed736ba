// executor.c: runs a tape (see protocol.h) in a new process made with clone3(2).
//
// nsrun is a multi-threaded Bun process, and JavaScript cannot run in a process between clone(2) and
// execve(2): a forked copy of the runtime crashes. So TypeScript decides every step of a box and
// compiles it into a tape of syscalls, and this file does only three generic things:
//   nsrun_spawn    clone3(flags | CLONE_VM) onto a stack of its own, with every signal blocked;
//   run_tape       in the child: reset signal handlers, then execute the ops in order;
//   nsrun_release  free the child's stack once it has exec'd or exited.
// It knows ops, not containers: no path, flag or decision of a box is written here.
//
// Async-signal safety. The child shares the nsrun process's memory with JavaScriptCore's threads,
// which keep running. So the child reads only the tape, writes only its own stack and the parts of
// the tape reserved for it (results, scratch slots), makes only raw syscalls (sys.h), and never
// returns: it ends in execve(2) or exit_group(2). Signals stay blocked in the child (the mask is
// inherited) and every handler is reset to SIG_DFL before the first op, so none of Bun's handlers
// can ever run on this stack. The stub (stub.c) unblocks them right before the box's command starts.
//
// Built freestanding (-nostdlib -ffreestanding -fno-builtin -fno-stack-protector): the build checks
// that the shared object has no undefined symbols, so no libc function can sneak in.
#include "protocol.h"
#include "sys.h"

#define CLONE_VM 0x00000100ULL
#define CLONE_PIDFD 0x00001000ULL
#define CLONE_INTO_CGROUP 0x200000000ULL
#define PROT_NONE 0
#define PROT_RW 3
#define MAP_PRIVATE_ANON_STACK (0x02 | 0x20 | 0x20000 | 0x4000) // PRIVATE|ANONYMOUS|STACK|NORESERVE
#define GUARD 4096UL
#define STR(x) #x
#define NUMBER(x) STR(x) // a macro's value as a string, for the assembly below

// clone3(2)'s argument, version 2 (with cgroup: Linux 5.7).
struct clone_args {
  unsigned long long flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// clone3 with fn(arg) run on the new stack in the child, which then exits. The kernel starts the
// child with the stack pointer at stack + stack_size and the caller's other registers, so fn and arg
// travel in registers that survive the syscall.
long nsrun_clone3(struct clone_args *args, unsigned long size, void (*fn)(void *), void *arg);
#if defined(__x86_64__)
__asm__(".text\n.globl nsrun_clone3\n.hidden nsrun_clone3\n.type nsrun_clone3,@function\nnsrun_clone3:\n"
        "  push %r12\n  push %r13\n"
        "  mov %rdx,%r12\n  mov %rcx,%r13\n"
        "  mov $" NUMBER(SYS_clone3) ",%eax\n  syscall\n"
        "  test %rax,%rax\n  jnz 1f\n"
        "  xor %ebp,%ebp\n  and $-16,%rsp\n  mov %r13,%rdi\n  call *%r12\n"
        "  mov $" NUMBER(NSRUN_EXIT_SETUP_FAILED) ",%edi\n  mov $" NUMBER(SYS_exit_group) ",%eax\n  syscall\n  hlt\n"
        "1:\n  pop %r13\n  pop %r12\n  ret\n");
#elif defined(__aarch64__)
__asm__(".text\n.globl nsrun_clone3\n.hidden nsrun_clone3\n.type nsrun_clone3,%function\nnsrun_clone3:\n"
        "  mov x9, x2\n  mov x10, x3\n"
        "  mov x8, #" NUMBER(SYS_clone3) "\n  svc #0\n"
        "  cbnz x0, 1f\n"
        "  mov x29, xzr\n  mov x30, xzr\n  mov x0, x10\n  blr x9\n"
        "  mov x0, #" NUMBER(NSRUN_EXIT_SETUP_FAILED) "\n  mov x8, #" NUMBER(SYS_exit_group) "\n  svc #0\n  brk #0\n"
        "1:\n  ret\n");
#endif

#include "run_tape.h"

// Returns the child's PID in the caller's PID namespace, or -errno. The child shares our memory,
// so the caller keeps the tape (and this stack) alive until the report pipe reaches end of file.
long nsrun_spawn(struct nsrun_tape *t) {
  unsigned long long all = ~0ULL, old = 0;
  struct clone_args ca;
  unsigned long size;
  long stack, pid;
  int pidfd = -1;
  if (t->magic != NSRUN_TAPE_MAGIC || t->version != NSRUN_TAPE_VERSION || t->stack_size < 16384) return -EINVAL;
  // The child's stack, with a guard page below it, so an overflow faults instead of writing into
  // whatever mapping lies below.
  size = (unsigned long)t->stack_size + GUARD;
  stack = sys6(SYS_mmap, 0, (long)size, PROT_RW, MAP_PRIVATE_ANON_STACK, -1, 0);
  if (IS_ERR(stack)) return stack;
  sys3(SYS_mprotect, stack, GUARD, PROT_NONE);
  ca.flags = t->clone_flags | CLONE_VM | CLONE_PIDFD | (t->cgroup_fd >= 0 ? CLONE_INTO_CGROUP : 0);
  ca.pidfd = (unsigned long long)(unsigned long)&pidfd;
  ca.child_tid = ca.parent_tid = ca.tls = ca.set_tid = ca.set_tid_size = 0;
  ca.exit_signal = SIGCHLD;
  ca.stack = (unsigned long long)stack + GUARD;
  ca.stack_size = t->stack_size;
  ca.cgroup = t->cgroup_fd >= 0 ? (unsigned long long)t->cgroup_fd : 0;
  // No handler of Bun's may run in the child before run_tape resets them: block everything across
  // the clone; the caller's own mask comes back right after.
  sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, 8);
  pid = nsrun_clone3(&ca, sizeof ca, run_tape, t);
  sys4(SYS_rt_sigprocmask, SIG_SETMASK, &old, 0, 8);
  if (IS_ERR(pid)) {
    sys2(SYS_munmap, stack, size);
    return pid;
  }
  t->stack = (unsigned long long)stack;
  t->pidfd = pidfd;
  return pid;
}

// ---------------------------------------------------------------------------------------------
// nsrun_hold_signals: for the hand-over to the supervisor (core/host/supervise.ts). Signals in
// `mask` must survive the caller's coming execve(2) as pending signals, for the stub to collect,
// wherever they arrive meanwhile. Blocking them on the calling thread is not enough: the kernel
// would then deliver them to another of Bun's threads, whose handler would hand them to JavaScript,
// which the execve is about to discard. So this handler, installed for each of them, sends any it
// gets on another thread to the calling thread, and on the calling thread re-raises it with the
// signal added to the mask it returns to: either way it ends up pending there, blocked.
static long main_tid;

void nsrun_restore_rt(void);
#if defined(__x86_64__)
__asm__(".text\n.hidden nsrun_restore_rt\nnsrun_restore_rt:\n  mov $" NUMBER(SYS_rt_sigreturn) ",%eax\n  syscall\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.hidden nsrun_restore_rt\nnsrun_restore_rt:\n  mov x8, #" NUMBER(SYS_rt_sigreturn) "\n  svc #0\n  brk #0\n");
#endif

static void hold(int sig, void *info, void *ucontext) {
  long pid = sys0(SYS_getpid);
  (void)info;
  if (sys0(SYS_gettid) == main_tid) *(unsigned long long *)((char *)ucontext + UC_SIGMASK_OFFSET) |= 1ULL << (sig - 1);
  sys3(SYS_tgkill, pid, main_tid, sig);
}

long nsrun_hold_signals(unsigned long long mask) {
  struct kernel_sigaction sa;
  int sig;
  main_tid = sys0(SYS_gettid);
  sa.handler = (unsigned long)hold;
  sa.flags = SA_SIGINFO | SA_RESTORER | SA_RESTART;
  sa.restorer = (unsigned long)nsrun_restore_rt;
  sa.mask = ~0ULL;
  for (sig = 1; sig <= NSIG; sig++)
    if ((mask >> (sig - 1)) & 1) sys4(SYS_rt_sigaction, sig, &sa, 0, 8);
  return sys4(SYS_rt_sigprocmask, SIG_BLOCK, &mask, 0, 8);
}

// ---------------------------------------------------------------------------------------------
// nsrun_watch_signals: while a box is set up (core/host/run.ts), the signals in `mask` are caught
// here instead of by Bun: the handler records each in `seen` and writes a byte to `fd` (a
// non-blocking pipe JavaScript reads, to wake up). nsrun_take_signals hands over and clears what
// was recorded. So at the hand-over, once nsrun_hold_signals has replaced this handler, one call
// says which signals came and were not yet handled: no turn of the event loop is needed for them.
static unsigned long long seen;
static long watch_fd = -1;

static void watch(int sig) {
  char c = (char)sig;
  __atomic_or_fetch(&seen, 1ULL << (sig - 1), __ATOMIC_SEQ_CST);
  sys3(SYS_write, watch_fd, (long)&c, 1);
}

long nsrun_watch_signals(unsigned long long mask, long fd) {
  struct kernel_sigaction sa;
  int sig;
  watch_fd = fd;
  sa.handler = (unsigned long)watch;
  sa.flags = SA_RESTORER | SA_RESTART;
  sa.restorer = (unsigned long)nsrun_restore_rt;
  sa.mask = ~0ULL;
  for (sig = 1; sig <= NSIG; sig++)
    if ((mask >> (sig - 1)) & 1) {
      long r = sys4(SYS_rt_sigaction, sig, (long)&sa, 0, 8);
      if (IS_ERR(r)) return r;
    }
  return 0;
}

unsigned long long nsrun_take_signals(void) {
  return __atomic_exchange_n(&seen, 0, __ATOMIC_SEQ_CST);
}

// The child has exec'd or exited (the report pipe said so): its stack is no longer in use.
void nsrun_release(struct nsrun_tape *t) {
  if (t->stack) sys2(SYS_munmap, (long)t->stack, (long)(t->stack_size + GUARD));
  t->stack = 0;
}
