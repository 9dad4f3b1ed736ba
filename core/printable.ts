// Text that came from a box (a command line, a process name, a path, a hostname) is printed with its
// control characters escaped: a box must not send escape sequences (a clipboard write, a cursor
// move, a title) to the terminal of whoever inspects it.

/** C0 controls, DEL and C1 controls (0x9b is CSI on many terminals) as \xHH; backslashes doubled. */
export function printable(text: string): string {
  return text.replace(/[\\\x00-\x1f\x7f-\x9f]/g, (c) => (c === "\\" ? "\\\\" : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}
