// stub.c: nsrun's small static program. It always runs from a sealed memfd (ffi/executor/load.ts), never
// from a file on disk, so that no process of a box ever has the nsrun executable as /proc/self/exe:
// a box that opens /proc/<pid>/exe finds this anonymous, write-sealed copy (runc's CVE-2019-5736).
// Static and libc-free, because it starts inside the box, where the rootfs's loader must not run.
//
//   nsrun exec REPORT_FD N PATH... -- ARGV...   become the box's command: execve(2) the first PATH
//                                               that works, with ARGV and this environment
//   nsrun init REPORT_FD N PATH... -- ARGV...   stay PID 1 (init = true): run the command as a child,
//                                               pass every signal on, reap orphans, exit as it does
//   nsrun tape FD                               run the tape in memfd FD (a sealed launch: OCI
//                                               create and exec; see run_sealed)
//   nsrun supervise PID [OPTION]...             nsrun itself, after the box's command has started
//                                               (the host execve(2)s into this to free its memory):
//                                               wait for PID, pass signals on, clean up, exit as it did
// Supervise options (TypeScript decides them all; see core/host/supervise.ts):
//   -f SIG          forward SIG to PID            -p SIG      SIG came before the hand-over: forward it first
//   -k              PID is PID 1 of its namespace: a signal it neither catches nor ignores, whose default
//                   action is to end it, becomes SIGKILL (the kernel would drop it), and the exit
//                   status says the signal that was sent
//   -K DIR          at the end, kill what is left in cgroup DIR     -w FILE VALUE   then write VALUE to FILE
//   -r DIR          then rmdir DIR                                  -o FILE TEXT    on exit 137, if FILE
//                   counts an oom_kill, print TEXT                  -t              trace the clean-up
//   -x PID          a helper of the box's (pasta), our child: SIGKILL and reap it when the box has exited
//   -T FD           FD is the master of the box's pseudo-terminal: put our terminal (fd 0) in raw mode,
//                   relay fd 0 -> FD -> fd 1, pass window size changes on, restore the terminal at the end
// Failures to start the command go to REPORT_FD as an NSRUN_REPORT_EXEC_FAILED record (protocol.h).
#include "protocol.h"
#include "sys.h"

#define NSRUN_TAPE_EXEC
static long tape_exec(const long long *a);
#include "run_tape.h"

#define ENOENT 2
#define EINTR 4
#define EACCES 13
#define ENOTDIR 20
#define F_SETFD 2
#define FD_CLOEXEC 1
#define WNOHANG 1
#define AT_FDCWD -100
#define AT_REMOVEDIR 0x200
#define O_RDONLY 0
#define O_WRONLY 1
#define O_CLOEXEC 0x80000
#define PR_SET_DUMPABLE 4
#define SIGCONT 18
#define SIGURG 23
#define SIGWINCH 28

static char **environ_;

static unsigned long slen(const char *s) {
  unsigned long n = 0;
  while (s[n]) n++;
  return n;
}
static int streq(const char *a, const char *b) {
  while (*a && *a == *b) a++, b++;
  return *a == *b;
}
static long num(const char *s) {
  long n = 0;
  if (!s || !*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    n = n * 10 + (*s - '0');
  }
  return n;
}
static void put(int fd, const char *s) { sys3(SYS_write, fd, s, slen(s)); }
__attribute__((noreturn)) static void quit(int code) {
  for (;;) sys1(SYS_exit_group, code);
}
static void report(long fd, int index, long err) {
  struct nsrun_report r;
  r.kind = NSRUN_REPORT_EXEC_FAILED;
  r.index = index;
  r.value = err;
  sys3(SYS_write, fd, &r, sizeof r);
}

// Try each path in order, as execvp(3) would: past ENOENT and ENOTDIR, past EACCES remembering it.
// The report pipe closes on a successful execve; on failure it carries why.
// Only execve(2), write(2) and exit_group(2): a sealed tape calls this after the seccomp filter.
__attribute__((noreturn)) static void exec_candidates(long report_fd, long n, char **paths, char **argv, char **envp) {
  long denied = -1, i;
  for (i = 0; i < n; i++) {
    long r = sys3(SYS_execve, paths[i], argv, envp);
    if (r == -ENOENT || r == -ENOTDIR) continue;
    if (r == -EACCES) {
      if (denied < 0) denied = i;
      continue;
    }
    report(report_fd, (int)i, -r);
    quit(NSRUN_EXIT_CANNOT_EXECUTE);
  }
  report(report_fd, (int)(denied >= 0 ? denied : n - 1), denied >= 0 ? EACCES : ENOENT);
  quit(denied >= 0 ? NSRUN_EXIT_CANNOT_EXECUTE : NSRUN_EXIT_NOT_FOUND);
}

__attribute__((noreturn)) static void exec_command(long report_fd, long n, char **paths, char **argv) {
  unsigned long long none = 0;
  sys3(SYS_fcntl, report_fd, F_SETFD, FD_CLOEXEC);
  // Signals were blocked since nsrun cloned the box's first process; the command starts with none blocked.
  sys4(SYS_rt_sigprocmask, SIG_SETMASK, &none, 0, 8);
  exec_candidates(report_fd, n, paths, argv, environ_);
}

// NSRUN_OP_EXEC (protocol.h): a0 report fd, a1 count, a2 paths, a3 argv, a4 envp.
static long tape_exec(const long long *a) {
  if (a[1] <= 0) return -EINVAL;
  exec_candidates((long)a[0], (long)a[1], (char **)(unsigned long)a[2], (char **)(unsigned long)a[3], (char **)(unsigned long)a[4]);
}

// ---------------------------------------------------------------------------------------------
// nsrun tape FD: a sealed launch. nsrun's clone3 child (executor.c) execs this program from its
// sealed memfd before it enters any namespace, with the tape in memfd FD. From here until the
// command's execve the process is a copy of nothing of nsrun's: its exe is the sealed stub, its
// environment empty, its memory this program and the tape. Non-dumpable first, while it is still
// in nsrun's namespaces and nothing of a box can see it: then its /proc files (mem, environ, fd,
// exe) stay closed to every process of the box, even one with the same uid and capabilities, since
// its memory belongs to the host's user namespace (ptrace(2), "Ptrace access mode checking").
#define PROT_RW 3
#define MAP_SHARED 0x01
#define MAP_FIXED_NOREPLACE 0x100000
#define SEEK_END 2
__attribute__((noreturn)) static void run_sealed(long fd) {
  struct nsrun_tape head;
  long size, at;
  sys2(SYS_prctl, PR_SET_DUMPABLE, 0);
  if (sys4(SYS_pread64, fd, &head, sizeof head, 0) != (long)sizeof head || head.magic != NSRUN_TAPE_MAGIC || head.version != NSRUN_TAPE_VERSION) quit(NSRUN_EXIT_SETUP_FAILED);
  size = sys3(SYS_lseek, fd, 0, SEEK_END);
  // Shared: nsrun reads the progress and the trace's results back from the memfd.
  at = IS_ERR(size) ? size : sys6(SYS_mmap, (long)NSRUN_SEALED_TAPE_ADDRESS, size, PROT_RW, MAP_SHARED | MAP_FIXED_NOREPLACE, fd, 0);
  if (IS_ERR(at) || at != (long)NSRUN_SEALED_TAPE_ADDRESS) {
    struct nsrun_report r = {NSRUN_REPORT_FAILED, -1, IS_ERR(at) ? -at : EINVAL};
    sys3(SYS_write, head.report_fd, &r, sizeof r);
    quit(NSRUN_EXIT_SETUP_FAILED);
  }
  sys1(SYS_close, fd);
  run_tape((void *)at);
}

// ---------------------------------------------------------------------------------------------
// Waiting: every signal is blocked and taken with sigtimedwait(2), so nothing runs asynchronously.

static unsigned long long sigbit(int sig) { return 1ULL << (sig - 1); }

static int wait_signal(unsigned long long set) {
  unsigned char info[128];
  long r;
  do r = sys4(SYS_rt_sigtimedwait, &set, info, 0, 8);
  while (r == -EINTR);
  return (int)r;
}

// Reap every child that has exited; returns 1 when `target` was among them, with its status.
// Helpers (-x): children of ours that end with the box. One reaped early is forgotten here, so that
// the end never signals a PID that may since belong to someone else.
static long helpers[8];
static int nhelpers;

static long box_rusage[18]; // the target's struct rusage, for the verdict (verdict.h)
static int box_rusage_set;

static int reap(long target, int *status) {
  int found = 0, i;
  for (;;) {
    int st = 0;
    long ru[18];
    long pid = sys4(SYS_wait4, -1, &st, WNOHANG, ru);
    if (pid <= 0) return found;
    if (pid == target) {
      *status = st, found = 1, box_rusage_set = 1;
      for (i = 0; i < 18; i++) box_rusage[i] = ru[i];
    }
    for (i = 0; i < nhelpers; i++)
      if (helpers[i] == pid) helpers[i] = 0;
  }
}

// Its port must be free once nsrun has returned: kill, then wait until it is gone.
static void end_helpers(void) {
  int i, st;
  for (i = 0; i < nhelpers; i++) {
    if (helpers[i] <= 0) continue;
    sys2(SYS_kill, helpers[i], SIGKILL);
    while (sys4(SYS_wait4, helpers[i], &st, 0, 0) == -EINTR) {
    }
  }
}

static int exit_code(int st) {
  int sig = st & 0x7f;
  return sig ? 128 + sig : (st >> 8) & 0xff;
}

// A hex mask from /proc/PID/status ("SigCgt:\t0000000000004a02"): bit N-1 set for signal N.
static int status_mask_has(const char *text, const char *field, int sig) {
  const char *p = text;
  while (*p) {
    const char *f = field, *q = p;
    while (*f && *q == *f) f++, q++;
    if (!*f) {
      unsigned long long m = 0;
      while (*q == '\t' || *q == ' ') q++;
      for (; (*q >= '0' && *q <= '9') || (*q >= 'a' && *q <= 'f'); q++) m = m * 16 + (unsigned long long)(*q <= '9' ? *q - '0' : *q - 'a' + 10);
      return (m >> (sig - 1)) & 1;
    }
    while (*p && *p != '\n') p++;
    if (*p) p++;
  }
  return 0;
}

// 1 when PID 1 of a PID namespace would not get `sig` from outside: no handler, not ignored, and
// the default action is not to ignore it either (signal(7)). The kernel drops such a signal.
static int dropped_by_pid1(long pid, int sig) {
  char path[48] = "/proc/", text[4096];
  long fd, n, used = 6;
  char digits[20];
  int d = 0;
  if (sig == SIGCHLD || sig == SIGCONT || sig == SIGURG || sig == SIGWINCH) return 0;
  do digits[d++] = (char)('0' + pid % 10), pid /= 10; while (pid);
  while (d) path[used++] = digits[--d];
  for (const char *s = "/status"; *s;) path[used++] = *s++;
  path[used] = 0;
  fd = sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
  if (IS_ERR(fd)) return 0; // gone already
  n = sys3(SYS_read, fd, text, sizeof text - 1);
  sys1(SYS_close, fd);
  if (n <= 0) return 0;
  text[n] = 0;
  return !status_mask_has(text, "SigCgt:", sig) && !status_mask_has(text, "SigIgn:", sig);
}

// ---------------------------------------------------------------------------------------------
// init = true: PID 1 of the box.

__attribute__((noreturn)) static void run_init(long report_fd, long n, char **paths, char **argv) {
  unsigned long long all = ~0ULL;
  long child;
  int status = 0;
  // Non-dumpable: the box's processes cannot ptrace PID 1 or open its /proc files for writing.
  sys2(SYS_prctl, PR_SET_DUMPABLE, 0);
  sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
  child = sys5(SYS_clone, SIGCHLD, 0, 0, 0, 0); // fork(2)
  if (child == 0) exec_command(report_fd, n, paths, argv);
  if (IS_ERR(child)) {
    report(report_fd, -1, -child);
    quit(NSRUN_EXIT_SETUP_FAILED);
  }
  sys1(SYS_close, report_fd);
  for (;;) {
    // Everything catchable but SIGCHLD goes on to the command; as PID 1 we adopt orphans and reap them.
    int sig = wait_signal(all);
    if (sig == SIGCHLD) {
      if (reap(child, &status)) quit(exit_code(status));
    } else if (sig > 0) {
      sys2(SYS_kill, child, sig);
    }
  }
}

// ---------------------------------------------------------------------------------------------
// supervise: nsrun's own process, after the hand-over.

struct cleanup {
  char **kill_dirs, **writes, **rmdirs;
  int nkill, nwrites, nrmdirs;
  const char *oom_file, *oom_text;
  int trace;
};

static void trace_line(const struct cleanup *c, const char *a, const char *b, const char *z) {
  if (!c->trace) return;
  put(2, "nsrun[supervisor] ");
  put(2, a);
  if (b) put(2, b);
  if (z) put(2, z);
  put(2, "\n");
}

static long read_file(const char *dir, const char *name, char *buf, long size) {
  char path[4096];
  unsigned long i = 0;
  long fd, n;
  for (const char *s = dir; *s && i < sizeof path - 64;) path[i++] = *s++;
  path[i++] = '/';
  for (const char *s = name; *s;) path[i++] = *s++;
  path[i] = 0;
  fd = sys4(SYS_openat, AT_FDCWD, path, O_RDONLY | O_CLOEXEC, 0);
  if (IS_ERR(fd)) return fd;
  n = sys3(SYS_read, fd, buf, size - 1);
  sys1(SYS_close, fd);
  if (n >= 0) buf[n] = 0;
  return n;
}

static long write_file(const char *path, const char *value) {
  long fd = sys4(SYS_openat, AT_FDCWD, path, O_WRONLY | O_CLOEXEC, 0), r;
  if (IS_ERR(fd)) return fd;
  r = sys3(SYS_write, fd, value, slen(value));
  sys1(SYS_close, fd);
  return r;
}

static int oom_killed(const char *file) {
  char text[1024];
  const char *p = text;
  long fd = sys4(SYS_openat, AT_FDCWD, file, O_RDONLY | O_CLOEXEC, 0), n;
  if (IS_ERR(fd)) return 0;
  n = sys3(SYS_read, fd, text, sizeof text - 1);
  sys1(SYS_close, fd);
  if (n <= 0) return 0;
  text[n] = 0;
  while (*p) {
    const char *k = "oom_kill ", *q = p;
    while (*k && *q == *k) k++, q++;
    if (!*k) return *q >= '1' && *q <= '9';
    while (*p && *p != '\n') p++;
    if (*p) p++;
  }
  return 0;
}

// Whatever the box left in its cgroups is killed (cgroup.kill on v2, else SIGKILL to each member),
// then the steps nsrun took are undone in reverse and the folders removed. rmdir(2) fails while any
// member remains, so wait (bounded) for them to go.
static void clean_up(const struct cleanup *c) {
  char procs[4096];
  struct timespec64 tick = {0, 10000000};
  int i, tries;
  for (i = 0; i < c->nkill; i++) {
    for (tries = 0; tries < 500; tries++) {
      long n = read_file(c->kill_dirs[i], "cgroup.procs", procs, sizeof procs);
      char kill_path[4096];
      unsigned long k = 0;
      if (n <= 0) break;
      trace_line(c, "processes left in \"", c->kill_dirs[i], "\": SIGKILL");
      for (const char *s = c->kill_dirs[i]; *s && k < sizeof kill_path - 16;) kill_path[k++] = *s++;
      for (const char *s = "/cgroup.kill"; *s;) kill_path[k++] = *s++;
      kill_path[k] = 0;
      if (IS_ERR(write_file(kill_path, "1"))) {
        for (char *p = procs; *p;) {
          long pid = 0;
          while (*p >= '0' && *p <= '9') pid = pid * 10 + (*p++ - '0');
          if (pid > 0) sys2(SYS_kill, pid, SIGKILL);
          while (*p && (*p < '0' || *p > '9')) p++;
        }
      }
      sys2(SYS_nanosleep, &tick, 0);
    }
  }
  for (i = 0; i < c->nwrites; i++) {
    trace_line(c, "write(\"", c->writes[2 * i], "\")");
    write_file(c->writes[2 * i], c->writes[2 * i + 1]);
  }
  for (i = 0; i < c->nrmdirs; i++) {
    trace_line(c, "rmdir(\"", c->rmdirs[i], "\")");
    sys3(SYS_unlinkat, AT_FDCWD, c->rmdirs[i], AT_REMOVEDIR);
  }
}

// ---- the terminal relay (-T) -----------------------------------------------------------------

#define TCGETS 0x5401
#define TCSETSW 0x5403
#define TIOCGWINSZ 0x5413
#define TIOCSWINSZ 0x5414
#define POLLIN 0x1
#define EAGAIN 11
#define EIO 5
#define SFD_CLOEXEC 0x80000
#define SFD_NONBLOCK 0x800
#define O_NONBLOCK 0x800
#define F_GETFL 3
#define F_SETFL 4

// struct termios as the kernel's TCGETS/TCSETS take it: 4 flag words, the line discipline, c_cc[19].
struct kernel_termios {
  unsigned int iflag, oflag, cflag, lflag;
  unsigned char line, cc[19];
};

struct pollfd {
  int fd;
  short events, revents;
};

static void write_all(int fd, const char *buf, long n) {
  while (n > 0) {
    long w = sys3(SYS_write, fd, buf, n);
    if (w == -EINTR) continue;
    if (w <= 0) return; // the reader is gone: drop the rest, as a terminal would
    buf += w, n -= w;
  }
}

// cfmakeraw(3): no echo, no line editing, no signals from keys; bytes pass as they are, so Ctrl-C
// and Ctrl-Z reach the box's terminal and its foreground job, not nsrun.
static void make_raw(struct kernel_termios *t) {
  t->iflag &= ~(0000001u | 0000002u | 0000010u | 0000040u | 0000100u | 0000200u | 0000400u | 0002000u);
  t->oflag &= ~0000001u;
  t->lflag &= ~(0000010u | 0000100u | 0000002u | 0000001u | 0100000u);
  t->cflag &= ~(0000060u | 0000400u);
  t->cflag |= 0000060u;
  t->cc[6] = 1; // VMIN
  t->cc[5] = 0; // VTIME
}

static void copy_window_size(int from, int to) {
  unsigned short ws[4];
  if (!IS_ERR(sys3(SYS_ioctl, from, TIOCGWINSZ, ws))) sys3(SYS_ioctl, to, TIOCSWINSZ, ws);
}

// ---- time limits and the verdict (--report), in verdict.h ------------------------------------
#include "verdict.h"

// ---- supervise ------------------------------------------------------------------------------

struct supervisor {
  long box;
  int pid1, killed_by, status, done;
};

static void on_signal(struct supervisor *s, int sig) {
  if (sig == SIGCHLD) {
    if (reap(s->box, &s->status)) s->done = 1;
  } else if (s->pid1 && dropped_by_pid1(s->box, sig)) {
    if (!s->killed_by) s->killed_by = sig;
    sys2(SYS_kill, s->box, SIGKILL);
  } else {
    sys2(SYS_kill, s->box, sig);
  }
}

__attribute__((noreturn)) static void supervise(int argc, char **argv) {
  unsigned long long all = ~0ULL, waited = sigbit(SIGCHLD);
  char *lists[3][64];
  struct cleanup c = {lists[0], lists[1], lists[2], 0, 0, 0, 0, 0, 0};
  struct supervisor s = {0, 0, 0, 0, 0};
  struct verdict v = {0};
  struct ending ending = {0};
  struct timespec64 wake;
  struct kernel_termios saved, raw;
  int pending[64], npending = 0, i, master = -1, terminal = 0, in_open = 1, master_open = 1;
  long sfd;
  s.box = argc > 2 ? num(argv[2]) : -1;
  if (s.box <= 0) {
    put(2, "nsrun: supervise: expected the box's PID\n");
    quit(NSRUN_EXIT_SETUP_FAILED);
  }
  for (i = 3; i < argc; i++) {
    const char *o = argv[i];
    long sig;
    if (streq(o, "-k")) s.pid1 = 1;
    else if (streq(o, "-t")) c.trace = 1;
    else if (streq(o, "-T") && i + 1 < argc && num(argv[i + 1]) >= 0) master = (int)num(argv[++i]);
    else if (streq(o, "-x") && i + 1 < argc && num(argv[i + 1]) > 0 && nhelpers < 8) helpers[nhelpers++] = num(argv[++i]);
    else if ((streq(o, "-f") || streq(o, "-p")) && i + 1 < argc && (sig = num(argv[i + 1])) > 0 && sig <= NSIG) {
      if (o[1] == 'f') waited |= sigbit((int)sig);
      else if (npending < 64) pending[npending++] = (int)sig;
      i++;
    } else if (streq(o, "-K") && i + 1 < argc && c.nkill < 64) c.kill_dirs[c.nkill++] = argv[++i];
    else if (streq(o, "-r") && i + 1 < argc && c.nrmdirs < 64) c.rmdirs[c.nrmdirs++] = argv[++i];
    else if (streq(o, "-w") && i + 2 < argc && c.nwrites < 32) c.writes[2 * c.nwrites] = argv[i + 1], c.writes[2 * c.nwrites + 1] = argv[i + 2], c.nwrites++, i += 2;
    else if (streq(o, "-o") && i + 2 < argc) c.oom_file = argv[i + 1], c.oom_text = argv[i + 2], i += 2;
    else if (verdict_option(&v, argc, argv, &i)) continue;
    else {
      put(2, "nsrun: supervise: unknown option ");
      put(2, o);
      put(2, "\n");
      quit(NSRUN_EXIT_SETUP_FAILED);
    }
  }
  // Every signal blocked; the ones we act on arrive through a signalfd, beside the terminal's fds.
  sys4(SYS_rt_sigprocmask, SIG_SETMASK, &all, 0, 8);
  if (master >= 0) waited |= sigbit(SIGWINCH);
  sfd = sys4(SYS_signalfd4, -1, &waited, 8, SFD_CLOEXEC | SFD_NONBLOCK);
  if (IS_ERR(sfd)) {
    put(2, "nsrun: supervise: signalfd failed\n");
    sys2(SYS_kill, s.box, SIGKILL);
    quit(NSRUN_EXIT_SETUP_FAILED);
  }
  if (master >= 0) {
    terminal = !IS_ERR(sys3(SYS_ioctl, 0, TCGETS, &saved));
    if (terminal) {
      raw = saved;
      make_raw(&raw);
      sys3(SYS_ioctl, 0, TCSETSW, &raw);
      copy_window_size(0, master);
    }
  }
  verdict_start(&v);
  // It may have exited before the hand-over; signals that came before it go first, in order.
  s.done = reap(s.box, &s.status);
  for (i = 0; i < npending && !s.done; i++) on_signal(&s, pending[i]);
  while (!s.done) {
    struct pollfd fds[3];
    int n = 0;
    char buf[4096];
    fds[n].fd = (int)sfd, fds[n].events = POLLIN, fds[n++].revents = 0;
    int in_at = -1, master_at = -1;
    if (master >= 0 && in_open) in_at = n, fds[n].fd = 0, fds[n].events = POLLIN, fds[n++].revents = 0;
    if (master >= 0 && master_open) master_at = n, fds[n].fd = master, fds[n].events = POLLIN, fds[n++].revents = 0;
    long ready = sys5(SYS_ppoll, fds, n, verdict_timeout(&v, &wake), 0, 8);
    verdict_check(&v, s.box);
    if (ready <= 0) continue;
    if (fds[0].revents) {
      unsigned char info[128];
      while (sys3(SYS_read, sfd, info, sizeof info) == (long)sizeof info) {
        int sig = (int)*(unsigned int *)info; // ssi_signo
        if (sig == SIGWINCH && master >= 0) copy_window_size(0, master);
        else on_signal(&s, sig);
      }
    }
    if (in_at >= 0 && fds[in_at].revents) {
      long r = sys3(SYS_read, 0, buf, sizeof buf);
      if (r > 0) write_all(master, buf, r);
      else if (r != -EINTR && r != -EAGAIN) in_open = 0; // end of our input: the box keeps its terminal
    }
    if (master_at >= 0 && fds[master_at].revents) {
      long r = sys3(SYS_read, master, buf, sizeof buf);
      if (r > 0) write_all(1, buf, r);
      else if (r != -EINTR && r != -EAGAIN) master_open = 0; // EIO: every process of the box closed it
    }
  }
  if (master >= 0) {
    // What the box wrote last is still in the terminal: pass it on, then give the terminal back.
    long fl = sys3(SYS_fcntl, master, F_GETFL, 0);
    char buf[4096];
    long r;
    if (!IS_ERR(fl)) sys3(SYS_fcntl, master, F_SETFL, fl | O_NONBLOCK);
    while (master_open && (r = sys3(SYS_read, master, buf, sizeof buf)) > 0) write_all(1, buf, r);
    if (terminal) sys3(SYS_ioctl, 0, TCSETSW, &saved);
  }
  end_helpers(); // the box they served is gone
  int code = s.killed_by ? 128 + s.killed_by : exit_code(s.status);
  if (v.on) {
    ending.status = s.status, ending.sent = s.killed_by;
    verdict_measure(&v, &ending, c.oom_file); // before the clean-up removes the cgroup
    verdict_say(&v);
  }
  if (code == 128 + SIGKILL && !s.killed_by && c.oom_file && oom_killed(c.oom_file)) {
    put(2, "nsrun: ");
    put(2, c.oom_text);
    put(2, "\n");
  }
  clean_up(&c);
  if (v.on) verdict_write(&v, &ending); // last: once the report is there, so is the clean-up
  quit(code);
}

// ---------------------------------------------------------------------------------------------

static int stub_main(long *sp) {
  int argc = (int)sp[0];
  char **argv = (char **)(sp + 1);
  environ_ = argv + argc + 1;
  const char *mode = argc > 1 ? argv[1] : "";
  if (streq(mode, "exec") || streq(mode, "init")) {
    // nsrun exec REPORT_FD N PATH... -- ARGV...
    long report_fd = argc > 2 ? num(argv[2]) : -1, n = argc > 3 ? num(argv[3]) : -1;
    if (report_fd >= 0 && n > 0 && 4 + n < argc && streq(argv[4 + n], "--") && 5 + n < argc) {
      if (mode[0] == 'e') exec_command(report_fd, n, argv + 4, argv + 5 + n);
      run_init(report_fd, n, argv + 4, argv + 5 + n);
    }
  } else if (streq(mode, "tape")) {
    // nsrun tape FD (a sealed launch; only nsrun's clone3 child execs this, with signals blocked)
    long fd = argc == 3 ? num(argv[2]) : -1;
    if (fd >= 3) run_sealed(fd);
  } else if (streq(mode, "supervise")) {
    supervise(argc, argv);
  }
  // Anything else (say, a box that ran this file through /proc/self/exe): refuse, harmlessly.
  put(2, "nsrun: this is nsrun's internal helper; it is not meant to be run by hand\n");
  return NSRUN_EXIT_NOT_FOUND;
}

#if defined(__x86_64__)
__asm__(".text\n.globl _start\n_start:\n  xor %ebp,%ebp\n  mov %rsp,%rdi\n  and $-16,%rsp\n  call entry\n  hlt\n");
#elif defined(__aarch64__)
__asm__(".text\n.globl _start\n_start:\n  mov x29, xzr\n  mov x30, xzr\n  mov x0, sp\n  bl entry\n  brk #0\n");
#endif

__attribute__((noreturn, used)) void entry(long *sp) { quit(stub_main(sp)); }
