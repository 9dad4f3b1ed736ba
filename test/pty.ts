// A pseudo-terminal for tests that drive nsrun as a user at a terminal would: the test holds the
// master, nsrun gets the slave as its stdin, stdout and stderr (and, through `setsid -c`, as its
// controlling terminal, so that a window size change sends it SIGWINCH).
import { dlopen, FFIType } from "bun:ffi";
import { closeSync, openSync, readSync, writeSync } from "node:fs";

const lib = dlopen("libc.so.6", {
  posix_openpt: { args: [FFIType.i32], returns: FFIType.i32 },
  grantpt: { args: [FFIType.i32], returns: FFIType.i32 },
  unlockpt: { args: [FFIType.i32], returns: FFIType.i32 },
  ptsname: { args: [FFIType.i32], returns: FFIType.cstring },
  ioctl: { args: [FFIType.i32, FFIType.u64, FFIType.ptr], returns: FFIType.i32 },
  fcntl: { args: [FFIType.i32, FFIType.i32, FFIType.i64], returns: FFIType.i32 },
}).symbols;

const TCGETS = 0x5401;
const TIOCSWINSZ = 0x5414;
const O_RDWR_NOCTTY = 0x2 | 0x100;

export interface Pty {
  master: number;
  slave: number;
  /** Everything read from the master so far. */
  output: () => string;
  write(text: string): void;
  /** Wait (bounded) until the output after `from` matches. */
  waitFor(pattern: RegExp, from?: number, ms?: number): Promise<boolean>;
  resize(rows: number, cols: number): void;
  /** The slave's termios bytes, to compare before and after. */
  termios(): string;
  close(): void;
}

export function openPty(rows = 30, cols = 100): Pty {
  const master = lib.posix_openpt(O_RDWR_NOCTTY);
  if (master < 0 || lib.grantpt(master) !== 0 || lib.unlockpt(master) !== 0) throw new Error("cannot open a pseudo-terminal");
  const slave = openSync(String(lib.ptsname(master)), O_RDWR_NOCTTY);
  let text = "";
  let closed = false;
  // Non-blocking reads as the output is asked for (Bun's streams do not read a terminal's master).
  lib.fcntl(master, 4 /* F_SETFL */, 0x2 | 0x800 /* O_RDWR | O_NONBLOCK */);
  const buf = Buffer.alloc(65536);
  const drain = () => {
    for (;;) {
      try {
        const n = readSync(master, buf);
        if (n <= 0) return;
        text += buf.subarray(0, n).toString();
      } catch (e) {
        // EAGAIN: nothing yet; EIO: every slave is closed, the end of the output
        if ((e as NodeJS.ErrnoException).code === "EIO") closed = true;
        return;
      }
    }
  };
  const pty: Pty = {
    master,
    slave,
    output: () => (drain(), text),
    write: (s) => void writeSync(master, s),
    async waitFor(pattern, from = 0, ms = 20_000) {
      const end = Date.now() + ms;
      while (Date.now() < end) {
        drain();
        if (pattern.test(text.slice(from))) return true;
        if (closed) break;
        await Bun.sleep(10);
      }
      return pattern.test(text.slice(from));
    },
    resize(r, c) {
      lib.ioctl(master, TIOCSWINSZ, new Uint16Array([r, c, 0, 0]));
    },
    termios() {
      const t = new Uint8Array(36);
      lib.ioctl(slave, TCGETS, t);
      return Buffer.from(t).toString("hex");
    },
    close() {
      closeSync(slave);
      closeSync(master);
    },
  };
  pty.resize(rows, cols);
  return pty;
}
