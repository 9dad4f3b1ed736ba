// The fds nsrun's processes hand each other (as stdio[3..] of Bun.spawn, so each lands on a fixed number).
//
//   host  --plan-->  ns stage  --plan-->  init stage
//   host  <--error-- ns stage, init stage   (closed unreported on the command's execve: setup is over)
//   host  <--pid---  ns stage               (the init stage's PID, for the host to wait on)
//   host  --go-->    ns stage, init stage   (end of file once the host has reaped the ns stage:
//                                            init is the host's child now, and may arm its death signal)
export const FD = {
  plan: 3,
  error: 4,
  pid: 5,
  go: 6,
} as const;
