// procrace: a process in a box that races for every other process it can see, as an attacker
// would (test/launcher.test.ts). Until the file STOP exists (or LIMIT seconds pass) it scans /proc
// over and over, and for each process other than itself tries what CVE-2019-5736 and its kin need:
//   open /proc/N/exe (O_RDONLY), then fstat it: "exe N DEV:INO" (the host file it runs from);
//   read /proc/N/environ: "environ N SECRET" when it holds the marker, else "environ N ok";
//   open /proc/N/mem read-write: "mem N";
//   open each /proc/N/fd/K for writing: "fd N K".
// Each success is printed once per process, with the process's name at that moment ("mem 7 sleep");
// "seen N COMM" when a process first shows up; "self
// DEV:INO" is its own exe (a positive control of the fstat). Static, so it runs in any rootfs.
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAXP 32768
static unsigned char done[MAXP]; // bit 0 seen, 1 exe, 2 environ, 3 mem, 4 fd

// The process's name now (before its command it is whatever nsrun started it as).
static const char *comm(int pid) {
  static char name[64];
  char path[64];
  int fd;
  ssize_t n;
  snprintf(path, sizeof path, "/proc/%d/comm", pid);
  fd = open(path, O_RDONLY);
  n = fd < 0 ? -1 : read(fd, name, sizeof name - 1);
  if (fd >= 0) close(fd);
  if (n <= 0) return "?";
  name[n - 1] = 0;
  return name;
}

static void try_pid(int pid, const char *secret) {
  char path[64], buf[8192];
  int fd;
  if (pid <= 0 || pid >= MAXP) return;
  if (!(done[pid] & 1)) {
    snprintf(path, sizeof path, "/proc/%d/comm", pid);
    fd = open(path, O_RDONLY);
    if (fd < 0) return;
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    buf[n > 0 ? n - 1 : 0] = 0;
    printf("seen %d %s\n", pid, buf);
    done[pid] |= 1;
  }
  if (!(done[pid] & 2)) {
    snprintf(path, sizeof path, "/proc/%d/exe", pid);
    fd = open(path, O_RDONLY);
    if (fd >= 0) {
      struct stat st;
      if (fstat(fd, &st) == 0) printf("exe %d %lu:%lu %s\n", pid, (unsigned long)st.st_dev, (unsigned long)st.st_ino, comm(pid));
      close(fd);
      done[pid] |= 2;
    }
  }
  if (!(done[pid] & 4)) {
    snprintf(path, sizeof path, "/proc/%d/environ", pid);
    fd = open(path, O_RDONLY);
    if (fd >= 0) {
      ssize_t n = read(fd, buf, sizeof buf - 1);
      close(fd);
      if (n > 0) {
        buf[n] = 0;
        for (ssize_t i = 0; i < n; i++)
          if (!buf[i]) buf[i] = '\n';
        printf("environ %d %s %s\n", pid, strstr(buf, secret) ? "SECRET" : "ok", comm(pid));
        done[pid] |= 4;
      }
    }
  }
  if (!(done[pid] & 8)) {
    snprintf(path, sizeof path, "/proc/%d/mem", pid);
    fd = open(path, O_RDWR);
    if (fd >= 0) {
      printf("mem %d %s\n", pid, comm(pid));
      close(fd);
      done[pid] |= 8;
    }
  }
  if (!(done[pid] & 16)) {
    snprintf(path, sizeof path, "/proc/%d/fd", pid);
    DIR *d = opendir(path);
    if (d) {
      struct dirent *e;
      while ((e = readdir(d))) {
        if (e->d_name[0] < '0' || e->d_name[0] > '9' || atoi(e->d_name) < 3) continue;
        char fdpath[300];
        snprintf(fdpath, sizeof fdpath, "/proc/%d/fd/%s", pid, e->d_name);
        int w = open(fdpath, O_WRONLY | O_NONBLOCK);
        if (w >= 0) {
          printf("fd %d %s %s\n", pid, e->d_name, comm(pid));
          close(w);
          done[pid] |= 16;
        }
      }
      closedir(d);
    }
  }
}

int main(int argc, char **argv) {
  const char *stop = argc > 1 ? argv[1] : "/tmp/stop";
  const char *secret = argc > 2 ? argv[2] : "NSRUN_PROBE_SECRET";
  int limit = argc > 3 ? atoi(argv[3]) : 60;
  const char *ready = argc > 4 ? argv[4] : NULL;
  int self = getpid();
  struct stat st;
  time_t end = time(NULL) + limit;
  setvbuf(stdout, NULL, _IOLBF, 0);
  if (stat("/proc/self/exe", &st) == 0) printf("self %lu:%lu\n", (unsigned long)st.st_dev, (unsigned long)st.st_ino);
  done[self] = 0xff;
  if (ready) {
    int fd = open(ready, O_WRONLY | O_CREAT, 0644);
    if (fd >= 0) close(fd);
  }
  while (access(stop, F_OK) != 0 && time(NULL) < end) {
    DIR *d = opendir("/proc");
    struct dirent *e;
    if (!d) return 1;
    while ((e = readdir(d)))
      if (e->d_name[0] >= '1' && e->d_name[0] <= '9') try_pid(atoi(e->d_name), secret);
    closedir(d);
  }
  printf("end\n");
  return 0;
}
