// The fds nsrun's processes hand each other (as stdio[3..] of Bun.spawn, so each lands on a fixed number).
//
//   host  --plan-->  ns stage  --plan-->  init stage
//   host  <--error-- ns stage, init stage   (closed unreported on the command's execve: setup is over)
//   host  <--pid---  ns stage               (the init stage's PID, for the host to wait on)
//   init  <--alive-- ns stage               (end of file once the ns stage is gone: init is the host's child now)
export const FD = {
  plan: 3,
  error: 4,
  pid: 5,
  alive: 5,
} as const;
