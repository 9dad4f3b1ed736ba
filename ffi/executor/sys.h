// sys.h: raw system calls for executor.c and stub.c, which use no libc at all.
//
// Why no libc: the executor's child shares the nsrun process's memory (CLONE_VM) while
// JavaScriptCore's threads keep running there. libc's wrappers touch thread-local state (errno, the
// stack protector's canary, locks), which belongs to the thread that called clone. So every call
// here is a bare `syscall` instruction and returns -errno on failure. The stub is static for
// another reason: it starts inside the box, where the rootfs's own dynamic loader must not run.
#ifndef NSRUN_SYS_H
#define NSRUN_SYS_H

// SYS_name for this architecture, written by build.ts from ffi/syscalls-*.ts (nsrun's one table).
#include "out/syscalls.h"

#if defined(__x86_64__)
#define UC_SIGMASK_OFFSET 296 // struct ucontext: flags, link, stack (24), sigcontext (256), sigmask

static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long r10 __asm__("r10") = d;
  register long r8 __asm__("r8") = e;
  register long r9 __asm__("r9") = f;
  long ret;
  __asm__ volatile("syscall" : "=a"(ret) : "a"(n), "D"(a), "S"(b), "d"(c), "r"(r10), "r"(r8), "r"(r9) : "rcx", "r11", "memory");
  return ret;
}
#elif defined(__aarch64__)
#define UC_SIGMASK_OFFSET 40 // struct ucontext: flags, link, stack (24), sigmask

static inline long sys6(long n, long a, long b, long c, long d, long e, long f) {
  register long x8 __asm__("x8") = n;
  register long x0 __asm__("x0") = a;
  register long x1 __asm__("x1") = b;
  register long x2 __asm__("x2") = c;
  register long x3 __asm__("x3") = d;
  register long x4 __asm__("x4") = e;
  register long x5 __asm__("x5") = f;
  __asm__ volatile("svc #0" : "+r"(x0) : "r"(x8), "r"(x1), "r"(x2), "r"(x3), "r"(x4), "r"(x5) : "memory");
  return x0;
}
#else
#error "nsrun's executor supports x86-64 and arm64"
#endif

#define sys0(n) sys6((n), 0, 0, 0, 0, 0, 0)
#define sys1(n, a) sys6((n), (long)(a), 0, 0, 0, 0, 0)
#define sys2(n, a, b) sys6((n), (long)(a), (long)(b), 0, 0, 0, 0)
#define sys3(n, a, b, c) sys6((n), (long)(a), (long)(b), (long)(c), 0, 0, 0)
#define sys4(n, a, b, c, d) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), 0, 0)
#define sys5(n, a, b, c, d, e) sys6((n), (long)(a), (long)(b), (long)(c), (long)(d), (long)(e), 0)

#define IS_ERR(r) ((unsigned long)(r) > (unsigned long)-4096L)

// <asm-generic/signal.h>
#define SIGKILL 9
#define SIGSTOP 19
#define SIGCHLD 17
#define SIG_BLOCK 0
#define SIG_SETMASK 2
#define SA_SIGINFO 0x4
#define SA_RESTORER 0x04000000
#define SA_RESTART 0x10000000
#define NSIG 64

// struct sigaction as the kernel takes it (handler, flags, restorer, mask); all zero is SIG_DFL.
struct kernel_sigaction {
  unsigned long handler, flags, restorer, mask;
};

struct timespec64 {
  long long sec, nsec;
};

#endif
