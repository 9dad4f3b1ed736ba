// A sealed launch's first tape (core/launch/launch.ts): the child execs the stub from its sealed
// memfd, which then runs the real tape from a memfd of its own. Apart from launch.ts so that a box
// started in place from a cached tape loads none of the tape's call builders.
import * as F from "../../ffi/flags";
import { execveat, fcntl } from "../tape/calls";
import type { RunnableTape } from "../tape/frozen";
import { Tape } from "../tape/tape";

/** A sealed launch's first tape: keep the fds the real tape needs across the execve, then exec the stub with it. */
export function bootstrap(tape: RunnableTape, stub: number, file: number): Tape {
  const t = new Tape();
  t.reportFd = tape.reportFd;
  t.cgroupFd = tape.cgroupFd;
  t.stage("namespaces", "start the stub, which runs the tape sealed");
  for (const fd of [...tape.kept, file]) if (fd >= 3 && fd !== stub) fcntl(t, fd, F.F_SETFD, 0, "F_SETFD, 0");
  execveat(t, stub, ["nsrun", "tape", String(file)], []);
  return t;
}
