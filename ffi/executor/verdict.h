// verdict.h: the supervisor's part of running an untrusted program (included by stub.c, whose small
// helpers it uses): the time limits (cpu_time, wall_time) and the verdict, the JSON object that says
// how the box ended (`nsrun run --report FILE`). core/verdict.ts defines the fields and the rules;
// this file follows them in the same order (test/verdict.test.ts compares the two).
//
// Options (TypeScript decides them all; see core/host/supervise.ts):
//   --start NS              the command started at NS (CLOCK_MONOTONIC)
//   --wall-limit MS         kill the box MS after its start
//   --cpu-limit MS          kill the box once its processes used MS of CPU time (user + system)
//   --cpu-cgroup V PATH     count CPU time in the box's cgroup: V 2, PATH its cpu.stat; V 1, PATH
//                           its cpuacct folder. Without it: the box's process tree in /proc while it
//                           runs, and wait4(2)'s rusage at the end
//   --memory-peak FILE      the cgroup's peak memory (v2 memory.peak, v1 memory.max_usage_in_bytes)
//   --pids-peak FILE        pids.peak          --pids-events FILE   pids.events (its "max" line)
//   --maxrss-floor BYTES    nsrun's own peak resident size at the hand-over: the box's first process
//                           began as a CLONE_VM clone of nsrun, and the kernel counts that memory's
//                           peak in its ru_maxrss, so a maxrss at or below this is only an upper bound
//   --report FD DIRFD TMP NAME   write the verdict to FD (the file TMP in the folder DIRFD), then
//                           rename TMP to NAME there: a reader sees the whole report or none
// The OOM count comes from the clean-up's -o FILE (memory.events or memory.oom_control).
#ifndef NSRUN_VERDICT_H
#define NSRUN_VERDICT_H

#define CLOCK_MONOTONIC 1
#define O_DIRECTORY_ 0x10000
#define SIGXCPU 24
#define SIGXFSZ 25
#define USER_HZ_NS 10000000LL // /proc's clock ticks are USER_HZ (100 a second) on every Linux ABI

struct verdict {
  int on;                         // a report or a time limit: the supervisor measures
  long long start_ns, end_ns, wall_limit_ms, cpu_limit_ms;
  int cpu_version;                // 0: no cgroup counts CPU time
  const char *cpu_path, *memory_peak, *pids_peak, *pids_events;
  long long maxrss_floor;
  long report_fd, report_dir;
  const char *report_tmp, *report_name;
  int killed_for;                 // 0, or 1 cpu-time, 2 wall-time
  long long cpu_seen_ns, seen_user_ns, seen_sys_ns; // the last account (seen_*: the /proc tree's)
  int ncpu;
};

// box_rusage (stub.c's reap): struct rusage: ru_utime, ru_stime (struct timeval each), then ru_maxrss in KiB.

static long long monotonic_ns(void) {
  struct timespec64 t;
  sys2(SYS_clock_gettime, CLOCK_MONOTONIC, &t);
  return t.sec * 1000000000LL + t.nsec;
}

static long long numll(const char *s) {
  long long n = 0;
  if (!s || !*s) return -1;
  for (; *s; s++) {
    if (*s < '0' || *s > '9') return -1;
    n = n * 10 + (*s - '0');
  }
  return n;
}

/** The number after `key` at the start of a line of `text` ("user_usec 123"), or -1. */
static long long field_of(const char *text, const char *key) {
  const char *p = text;
  while (*p) {
    const char *k = key, *q = p;
    while (*k && *q == *k) k++, q++;
    if (!*k && (*q == ' ' || *q == '\t')) {
      long long n = 0;
      while (*q == ' ' || *q == '\t') q++;
      if (*q < '0' || *q > '9') return -1;
      while (*q >= '0' && *q <= '9') n = n * 10 + (*q++ - '0');
      return n;
    }
    while (*p && *p != '\n') p++;
    if (*p) p++;
  }
  return -1;
}

/** A file that holds one number, or -1 (missing: an older kernel). */
static long long read_number(const char *dir, const char *name) {
  char text[64];
  const char *p = text;
  long long n = 0;
  if (read_file(dir, name, text, sizeof text) <= 0) return -1;
  if (*p < '0' || *p > '9') return -1;
  while (*p >= '0' && *p <= '9') n = n * 10 + (*p++ - '0');
  return n;
}

/** read_file wants a folder and a name; a full path is split at its last '/'. */
static long long read_number_at(const char *path) {
  char dir[4096];
  unsigned long i = 0, cut = 0;
  for (; path[i] && i < sizeof dir - 1; i++) {
    dir[i] = path[i];
    if (path[i] == '/') cut = i;
  }
  dir[cut] = 0;
  return read_number(dir, path + cut + 1);
}

static long long events_field(const char *path, const char *key) {
  char dir[4096], text[1024];
  unsigned long i = 0, cut = 0;
  for (; path[i] && i < sizeof dir - 1; i++) {
    dir[i] = path[i];
    if (path[i] == '/') cut = i;
  }
  dir[cut] = 0;
  if (read_file(dir, path + cut + 1, text, sizeof text) <= 0) return -1;
  return field_of(text, key);
}

// ---- the box's process tree in /proc (no cgroup) ------------------------------------------------

#define MAX_SCAN 8192
static long scan_pid[MAX_SCAN], scan_ppid[MAX_SCAN];
static long long scan_user[MAX_SCAN], scan_sys[MAX_SCAN];
static char scan_in[MAX_SCAN];

/** Read /proc/PID/stat: ppid, and utime + cutime, stime + cstime (what it and the children it waited for used). */
static int stat_of(long pid, long *ppid, long long *user, long long *sys) {
  char dir[32] = "/proc/", digits[20], text[1024];
  int d = 0, used = 6, field = 2;
  const char *p, *close_paren = 0;
  long n;
  long long v = 0;
  do digits[d++] = (char)('0' + pid % 10), pid /= 10; while (pid);
  while (d) dir[used++] = digits[--d];
  dir[used] = 0;
  n = read_file(dir, "stat", text, sizeof text);
  if (n <= 0) return 0;
  for (p = text; *p; p++)
    if (*p == ')') close_paren = p; // the command's name may hold ')' itself: the last one ends it
  if (!close_paren) return 0;
  *user = 0, *sys = 0;
  for (p = close_paren + 1; *p && field < 17;) {
    while (*p == ' ') p++;
    field++;
    v = 0;
    while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
    while (*p && *p != ' ') p++;
    if (field == 4) *ppid = (long)v;
    if (field == 14 || field == 16) *user += v;
    if (field == 15 || field == 17) *sys += v;
  }
  return field == 17;
}

/** The index of `pid` in scan_pid[0..n) (sorted: /proc lists processes in PID order), or -1. */
static int scan_find(int n, long pid) {
  int lo = 0, hi = n - 1;
  while (lo <= hi) {
    int mid = (lo + hi) / 2;
    if (scan_pid[mid] == pid) return mid;
    if (scan_pid[mid] < pid) lo = mid + 1;
    else hi = mid - 1;
  }
  return -1;
}

/**
 * Every process in the box's tree (the box's PID and its descendants), marked in scan_in; returns
 * how many processes were read. Each process's parent chain is walked once (what is learnt is kept),
 * so a box cannot slow this down with a deep chain of processes: O(n log n) for n processes.
 */
static int scan_tree(long box) {
  static int chain[MAX_SCAN];
  char buf[8192];
  int n = 0, i, sorted = 1;
  long fd = sys4(SYS_openat, AT_FDCWD, "/proc", O_RDONLY | O_DIRECTORY_ | O_CLOEXEC, 0), got;
  if (IS_ERR(fd)) return 0;
  while (n < MAX_SCAN && (got = sys3(SYS_getdents64, fd, buf, sizeof buf)) > 0) {
    for (long off = 0; off < got && n < MAX_SCAN;) {
      unsigned short reclen = *(unsigned short *)(buf + off + 16);
      long pid = num(buf + off + 19);
      off += reclen;
      if (pid <= 0 || !stat_of(pid, &scan_ppid[n], &scan_user[n], &scan_sys[n])) continue;
      if (n && pid < scan_pid[n - 1]) sorted = 0;
      scan_pid[n] = pid;
      scan_in[n] = pid == box ? 1 : 0; // 1 in the tree, 2 not, 0 not known yet
      n++;
    }
  }
  sys1(SYS_close, fd);
  if (!sorted) { // never seen: /proc lists in PID order; then only the box itself is known
    for (i = 0; i < n; i++) scan_in[i] = scan_in[i] == 1;
    return n;
  }
  for (i = 0; i < n; i++) {
    int len = 0, at = i, verdict;
    while (at >= 0 && scan_in[at] == 0 && len < n) chain[len++] = at, at = scan_find(n, scan_ppid[at]);
    verdict = at >= 0 && scan_in[at] == 1 ? 1 : 2;
    while (len) scan_in[chain[--len]] = (char)verdict;
  }
  for (i = 0; i < n; i++) scan_in[i] = scan_in[i] == 1;
  return n;
}

// ---- CPU time ---------------------------------------------------------------------------------

/** The box's CPU time so far (user and system apart, in ns); 0 when the box's cgroup could not be read. */
static int cgroup_cpu(const struct verdict *v, long long *user, long long *sys) {
  if (v->cpu_version == 2) {
    char dir[4096], text[1024];
    unsigned long i = 0, cut = 0;
    for (; v->cpu_path[i] && i < sizeof dir - 1; i++) {
      dir[i] = v->cpu_path[i];
      if (v->cpu_path[i] == '/') cut = i;
    }
    dir[cut] = 0;
    if (read_file(dir, v->cpu_path + cut + 1, text, sizeof text) <= 0) return 0;
    *user = field_of(text, "user_usec") * 1000, *sys = field_of(text, "system_usec") * 1000;
    return *user >= 0 && *sys >= 0;
  }
  *user = read_number(v->cpu_path, "cpuacct.usage_user");
  *sys = read_number(v->cpu_path, "cpuacct.usage_sys");
  return *user >= 0 && *sys >= 0;
}

static long long cpu_now(struct verdict *v, long box) {
  long long user = 0, sys = 0;
  int n, i;
  if (v->cpu_version && cgroup_cpu(v, &user, &sys)) return user + sys;
  n = scan_tree(box);
  for (i = 0; i < n; i++)
    if (scan_in[i]) user += scan_user[i] * USER_HZ_NS, sys += scan_sys[i] * USER_HZ_NS;
  if (user + sys >= v->seen_user_ns + v->seen_sys_ns) v->seen_user_ns = user, v->seen_sys_ns = sys;
  return user + sys;
}

static int count_cpus(void) {
  unsigned char mask[128];
  long n = sys3(SYS_sched_getaffinity, 0, sizeof mask, mask), i;
  int count = 0;
  for (i = 0; i < n; i++)
    for (int b = 0; b < 8; b++) count += (mask[i] >> b) & 1;
  return count > 0 ? count : 1;
}

// ---- the supervisor's hooks -------------------------------------------------------------------

/** Takes a verdict option at argv[*i]; returns 0 when it is not one. */
static int verdict_option(struct verdict *v, int argc, char **argv, int *i) {
  const char *o = argv[*i];
  int left = argc - *i - 1;
  if (streq(o, "--start") && left >= 1) v->start_ns = numll(argv[++*i]);
  else if (streq(o, "--wall-limit") && left >= 1) v->wall_limit_ms = numll(argv[++*i]);
  else if (streq(o, "--cpu-limit") && left >= 1) v->cpu_limit_ms = numll(argv[++*i]);
  else if (streq(o, "--cpu-cgroup") && left >= 2) v->cpu_version = (int)num(argv[*i + 1]), v->cpu_path = argv[*i + 2], *i += 2;
  else if (streq(o, "--memory-peak") && left >= 1) v->memory_peak = argv[++*i];
  else if (streq(o, "--pids-peak") && left >= 1) v->pids_peak = argv[++*i];
  else if (streq(o, "--pids-events") && left >= 1) v->pids_events = argv[++*i];
  else if (streq(o, "--maxrss-floor") && left >= 1) v->maxrss_floor = numll(argv[++*i]);
  else if (streq(o, "--report") && left >= 4) {
    v->report_fd = num(argv[*i + 1]), v->report_dir = num(argv[*i + 2]);
    v->report_tmp = argv[*i + 3], v->report_name = argv[*i + 4], *i += 4;
  } else return 0;
  v->on = 1;
  return 1;
}

static void verdict_start(struct verdict *v) {
  if (!v->on) return;
  if (v->start_ns <= 0) v->start_ns = monotonic_ns();
  v->ncpu = count_cpus();
}

/** How long the supervisor may wait before it must look at the limits again; 0 (NULL) is for ever. */
static struct timespec64 *verdict_timeout(struct verdict *v, struct timespec64 *t) {
  long long wait = -1, now;
  // Without a cgroup, processes the kernel kills with the box's PID 1 are reaped by nobody who
  // counts (a dying PID namespace's init reaps them with SIGCHLD ignored): their CPU time is only
  // in what the supervisor saw of the tree, so it looks every second (a look at /proc costs a few
  // ms on a busy host); with a CPU limit, as often as that needs.
  int sampling = v->on && !v->cpu_version;
  if (v->killed_for) return 0; // the box is being killed: wait for its end
  if (v->wall_limit_ms <= 0 && v->cpu_limit_ms <= 0 && !sampling) return 0;
  now = monotonic_ns();
  if (sampling) wait = 1000000000LL;
  if (v->wall_limit_ms > 0 && (wait < 0 || v->start_ns + v->wall_limit_ms * 1000000LL - now < wait)) wait = v->start_ns + v->wall_limit_ms * 1000000LL - now;
  if (v->cpu_limit_ms > 0) {
    // The box uses at most ncpu CPU seconds a second: look again before it can have used the rest,
    // and at least every 100ms, at most every 5ms (so the account stays cheap).
    long long rest = (v->cpu_limit_ms * 1000000LL - v->cpu_seen_ns) / v->ncpu;
    if (rest < 5000000LL) rest = 5000000LL;
    if (rest > 100000000LL) rest = 100000000LL;
    if (wait < 0 || rest < wait) wait = rest;
  }
  if (wait < 0) wait = 0;
  t->sec = wait / 1000000000LL, t->nsec = wait % 1000000000LL;
  return t;
}

/**
 * Kill the box: its first process (with a PID namespace, that ends them all), and its tree in /proc.
 * The tree is read first: once the first process is dead its children are the init's, and no
 * longer found under it (a box without a PID namespace then kept all but its first process).
 */
static void kill_box(long box) {
  int n = scan_tree(box), i;
  sys2(SYS_kill, box, SIGKILL);
  for (i = 0; i < n; i++)
    if (scan_in[i]) sys2(SYS_kill, scan_pid[i], SIGKILL);
}

/** After every wake-up: a limit passed kills the box (once). */
static void verdict_check(struct verdict *v, long box) {
  if (v->killed_for || !v->on) return;
  if (v->cpu_limit_ms <= 0 && !v->cpu_version) v->cpu_seen_ns = cpu_now(v, box); // sampling only
  if (v->wall_limit_ms > 0 && monotonic_ns() >= v->start_ns + v->wall_limit_ms * 1000000LL) {
    v->killed_for = 2;
    kill_box(box);
    return;
  }
  if (v->cpu_limit_ms > 0) {
    v->cpu_seen_ns = cpu_now(v, box);
    if (v->cpu_seen_ns >= v->cpu_limit_ms * 1000000LL) {
      v->killed_for = 1;
      kill_box(box);
    }
  }
}

// ---- the report -------------------------------------------------------------------------------

static const char *const SIGNAL_NAMES[] = {
    0, "SIGHUP", "SIGINT", "SIGQUIT", "SIGILL", "SIGTRAP", "SIGABRT", "SIGBUS", "SIGFPE", "SIGKILL", "SIGUSR1", "SIGSEGV",
    "SIGUSR2", "SIGPIPE", "SIGALRM", "SIGTERM", "SIGSTKFLT", "SIGCHLD", "SIGCONT", "SIGSTOP", "SIGTSTP", "SIGTTIN",
    "SIGTTOU", "SIGURG", "SIGXCPU", "SIGXFSZ", "SIGVTALRM", "SIGPROF", "SIGWINCH", "SIGIO", "SIGPWR", "SIGSYS",
};

struct text {
  char buf[2048];
  unsigned long n;
  int fields;
};

static void add(struct text *t, const char *s) {
  while (*s && t->n < sizeof t->buf - 1) t->buf[t->n++] = *s++;
}
static void add_num(struct text *t, long long n) {
  char digits[24];
  int d = 0;
  if (n < 0) {
    add(t, "-");
    n = -n;
  }
  do digits[d++] = (char)('0' + n % 10), n /= 10; while (n);
  while (d && t->n < sizeof t->buf - 1) t->buf[t->n++] = digits[--d];
}
/** A field's name, in core/verdict.ts's VERDICT_FIELDS order. */
static void field(struct text *t, const char *name) {
  add(t, t->fields++ ? ",\"" : "{\"");
  add(t, name);
  add(t, "\":");
}
static void str_or_null(struct text *t, const char *s) {
  if (!s) {
    add(t, "null");
    return;
  }
  add(t, "\"");
  add(t, s); // only nsrun's own words and signal names: nothing to escape
  add(t, "\"");
}
static void num_or_null(struct text *t, long long n) {
  if (n < 0) add(t, "null");
  else add_num(t, n);
}

/** The box's exit status is in; measure (before the clean-up removes the cgroup). Returns the reason. */
struct ending {
  int status, sent;                // wait status; a signal nsrun sent in its place (PID 1's rule), or 0
  long long user_ns, sys_ns, memory, pids_peak, pids_refused, oom_kills;
  const char *cpu_source, *memory_source;
};

static void verdict_measure(struct verdict *v, struct ending *e, const char *oom_file) {
  long long user, sys;
  v->end_ns = monotonic_ns();
  if (v->cpu_version && cgroup_cpu(v, &user, &sys)) e->user_ns = user, e->sys_ns = sys, e->cpu_source = "cgroup";
  else {
    e->user_ns = box_rusage[0] * 1000000000LL + box_rusage[1] * 1000LL;
    e->sys_ns = box_rusage[2] * 1000000000LL + box_rusage[3] * 1000LL;
    e->cpu_source = "rusage";
    // What the tree in /proc showed last, when it is more: processes killed with the box, not waited for.
    if (v->seen_user_ns + v->seen_sys_ns > e->user_ns + e->sys_ns) e->user_ns = v->seen_user_ns, e->sys_ns = v->seen_sys_ns;
  }
  e->memory = v->memory_peak ? read_number_at(v->memory_peak) : -1;
  e->memory_source = "cgroup";
  if (e->memory < 0 && box_rusage_set) {
    e->memory = box_rusage[4] * 1024LL;
    e->memory_source = e->memory > v->maxrss_floor ? "maxrss" : "maxrss-upper-bound";
  } else if (e->memory < 0) e->memory_source = 0;
  e->pids_peak = v->pids_peak ? read_number_at(v->pids_peak) : -1;
  e->pids_refused = v->pids_events ? events_field(v->pids_events, "max") : -1;
  e->oom_kills = oom_file ? events_field(oom_file, "oom_kill") : -1;
}

/** core/verdict.ts's decideVerdict, in C. */
static const char *verdict_reason(const struct verdict *v, const struct ending *e) {
  int sig = e->sent ? e->sent : (e->status & 0x7f);
  int failed = sig || ((e->status >> 8) & 0xff);
  long long cpu = e->user_ns + e->sys_ns;
  if (v->killed_for == 2) return "wall-time";
  if (v->killed_for == 1) return "cpu-time";
  if (v->cpu_limit_ms > 0 && (sig == SIGXCPU || (sig == SIGKILL && cpu >= v->cpu_limit_ms * 1000000LL))) return "cpu-time";
  if (e->oom_kills > 0 && failed) return "memory";
  if (sig == SIGXFSZ) return "file-size";
  if (e->pids_refused > 0 && failed) return "pids";
  return sig ? "signaled" : "exited";
}

/** Write the verdict and rename it into place. Failures are said on stderr; the exit status stands. */
static void verdict_write(const struct verdict *v, const struct ending *e) {
  struct text t;
  int sig = e->sent ? e->sent : (e->status & 0x7f);
  long r;
  if (!v->report_name) return;
  t.n = 0, t.fields = 0;
  field(&t, "reason"), str_or_null(&t, verdict_reason(v, e));
  field(&t, "exit_code"), num_or_null(&t, sig ? -1 : (e->status >> 8) & 0xff);
  field(&t, "signal"), str_or_null(&t, !sig ? 0 : sig < 32 ? SIGNAL_NAMES[sig] : "SIGRT");
  field(&t, "wall_ms"), add_num(&t, (v->end_ns - v->start_ns) / 1000000LL);
  field(&t, "cpu_ms"), add_num(&t, (e->user_ns + e->sys_ns) / 1000000LL);
  field(&t, "user_ms"), add_num(&t, e->user_ns / 1000000LL);
  field(&t, "system_ms"), add_num(&t, e->sys_ns / 1000000LL);
  field(&t, "cpu_source"), str_or_null(&t, e->cpu_source);
  field(&t, "memory_peak_bytes"), num_or_null(&t, e->memory);
  field(&t, "memory_peak_source"), str_or_null(&t, e->memory_source);
  field(&t, "pids_peak"), num_or_null(&t, e->pids_peak);
  field(&t, "oom_kills"), num_or_null(&t, e->oom_kills);
  field(&t, "killed_by_nsrun"), add(&t, v->killed_for ? "true" : "false");
  field(&t, "cpu_time_limit_ms"), num_or_null(&t, v->cpu_limit_ms > 0 ? v->cpu_limit_ms : -1);
  field(&t, "wall_time_limit_ms"), num_or_null(&t, v->wall_limit_ms > 0 ? v->wall_limit_ms : -1);
  field(&t, "error"), add(&t, "null");
  add(&t, "}\n");
  write_all((int)v->report_fd, t.buf, (long)t.n);
  sys1(SYS_close, v->report_fd);
  r = sys5(SYS_renameat2, v->report_dir, v->report_tmp, v->report_dir, v->report_name, 0);
  if (IS_ERR(r)) {
    put(2, "nsrun: --report: renameat2 to \"");
    put(2, v->report_name);
    put(2, "\" failed; the verdict stays in \"");
    put(2, v->report_tmp);
    put(2, "\"\n");
  }
}

/** One line on stderr when nsrun ended the box, as for the OOM killer. */
static void verdict_say(const struct verdict *v) {
  if (v->killed_for == 1) put(2, "nsrun: the box used up its CPU time (limits.cpu_time): killed\n");
  if (v->killed_for == 2) put(2, "nsrun: the box ran out of time (limits.wall_time): killed\n");
}

#endif
