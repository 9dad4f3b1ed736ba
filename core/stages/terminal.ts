// A terminal for the box (`nsrun run -t`, [process] terminal = true): a pseudo-terminal of the box's
// own devpts, so that job control, Ctrl-C and Ctrl-Z work inside, and the box never shares (and so
// can never push input into, TIOCSTI) the terminal nsrun was started from.
//
// The box's first process opens it, after its new session (setsid) and before it becomes the
// command: the pts side becomes its controlling terminal and fds 0-2, and the master side goes to
// nsrun over a Unix socket (SCM_RIGHTS). nsrun's supervisor then relays between its own terminal,
// in raw mode, and the master (see the -T option in ffi/executor/stub.c).
import * as F from "../../ffi/flags";
import { closeFd, dup3, ioctlInt, ioctlPtr, openat, sendFd } from "../tape/calls";
import type { Tape } from "../tape/tape";

export interface TerminalPlan {
  rows: number;
  cols: number;
}


/** Tape: open the box's pseudo-terminal, make it fds 0-2 and the controlling terminal, hand the master to nsrun. */
export function emitTerminal(t: Tape, size: TerminalPlan, socket: number): void {
  t.doing("open a pseudo-terminal of the box's own devpts", {
    ENOENT: "the box has no /dev/pts/ptmx: a terminal needs nsrun's default /dev (or a devpts mount at /dev/pts)",
  });
  const ptm = t.reg("ptm");
  const pts = t.reg("pts");
  // The box's own devpts (its /dev is nsrun's tmpfs, /dev/pts nsrun's devpts): ptmx of that instance.
  openat(t, F.AT_FDCWD, "/dev/pts/ptmx", F.O_RDWR | F.O_NOCTTY, 0, { dst: ptm });
  ioctlPtr(t, ptm, F.TIOCSPTLCK, t.bytes(new Uint8Array(4), "&0"), "TIOCSPTLCK, &0");
  ioctlInt(t, ptm, F.TIOCGPTPEER, F.O_RDWR | F.O_NOCTTY, "TIOCGPTPEER, O_RDWR|O_NOCTTY", pts);
  const ws = new Uint8Array(new Uint16Array([size.rows, size.cols, 0, 0]).buffer);
  ioctlPtr(t, pts, F.TIOCSWINSZ, t.bytes(ws, `{${size.rows}, ${size.cols}}`), `TIOCSWINSZ, {${size.rows}, ${size.cols}}`);
  ioctlInt(t, pts, F.TIOCSCTTY, 0, "TIOCSCTTY, 0");
  for (const fd of [0, 1, 2]) dup3(t, pts, fd);
  t.doing("hand the terminal's master to nsrun");
  sendFd(t, socket, ptm);
  closeFd(t, socket);
}
