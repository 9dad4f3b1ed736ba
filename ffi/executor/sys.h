// sys.h: raw system calls for executor.c and stub.c, which use no libc at all.
//
// Why no libc: the executor's child shares the nsrun process's memory (CLONE_VM) while
// JavaScriptCore's threads keep running there. libc's wrappers touch thread-local state (errno, the
// stack protector's canary, locks), which belongs to the thread that called clone. So every call
// here is a bare `syscall` instruction and returns -errno on failure. The stub is static for
// another reason: it starts inside the box, where the rootfs's own dynamic loader must not run.
#ifndef NSRUN_SYS_H
#define NSRUN_SYS_H

#if defined(__x86_64__)
#define SYS_read 0
#define SYS_write 1
#define SYS_close 3
#define SYS_mmap 9
#define SYS_lseek 8
#define SYS_pread64 17
#define SYS_mprotect 10
#define SYS_munmap 11
#define SYS_rt_sigaction 13
#define SYS_rt_sigprocmask 14
#define SYS_nanosleep 35
#define SYS_getpid 39
#define SYS_clone 56
#define SYS_execve 59
#define SYS_wait4 61
#define SYS_kill 62
#define SYS_fcntl 72
#define SYS_rt_sigtimedwait 128
#define SYS_prctl 157
#define SYS_clock_gettime 228
#define SYS_exit_group 231
#define SYS_openat 257
#define SYS_unlinkat 263
#define SYS_clone3 435
#define SYS_gettid 186
#define SYS_tgkill 234
#define SYS_ioctl 16
#define SYS_ppoll 271
#define SYS_signalfd4 289
#define SYS_rt_sigreturn 15
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
#define SYS_unlinkat 35
#define SYS_fcntl 25
#define SYS_openat 56
#define SYS_close 57
#define SYS_read 63
#define SYS_write 64
#define SYS_exit_group 94
#define SYS_nanosleep 101
#define SYS_clock_gettime 113
#define SYS_kill 129
#define SYS_rt_sigaction 134
#define SYS_rt_sigprocmask 135
#define SYS_rt_sigtimedwait 137
#define SYS_prctl 167
#define SYS_getpid 172
#define SYS_munmap 215
#define SYS_clone 220
#define SYS_execve 221
#define SYS_mmap 222
#define SYS_lseek 62
#define SYS_pread64 67
#define SYS_mprotect 226
#define SYS_wait4 260
#define SYS_clone3 435
#define SYS_gettid 178
#define SYS_tgkill 131
#define SYS_ioctl 29
#define SYS_ppoll 73
#define SYS_signalfd4 74
#define SYS_rt_sigreturn 139
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
