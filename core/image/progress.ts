// Progress of downloads and unpacks, on stderr. On a terminal: one bar per task, redrawn in place
// (several at once while layers download in parallel). Otherwise (a log, CI): one plain line when a
// task starts and one when it ends, never control characters.
export interface Task {
  add(bytes: number): void;
  /** Set the bytes done so far (a resumed download starts past 0). */
  set(bytes: number): void;
  done(summary: string): void;
  fail(summary: string): void;
}

export function formatBytes(n: number): string {
  if (n < 1024) return `${n} B`;
  const units = ["KB", "MB", "GB", "TB"];
  let v = n / 1024;
  let i = 0;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return `${v.toFixed(v < 10 ? 1 : 0)} ${units[i]}`;
}

const WIDTH = 24;

export class Progress {
  private readonly live: Array<{ label: string; total: number; done: number; final?: string }> = [];
  private drawn = 0;
  private lastDraw = 0;

  constructor(
    private readonly write: (text: string) => void = (t) => process.stderr.write(t),
    readonly tty = process.stderr.isTTY === true && !process.env.NSRUN_PLAIN_PROGRESS,
  ) {}

  /** A task of `total` bytes (0 when unknown). */
  start(label: string, total: number): Task {
    const t = { label, total, done: 0 } as (typeof this.live)[number];
    if (this.tty) {
      this.live.push(t);
      this.draw(true);
    } else this.write(`nsrun: ${label}: ${total ? formatBytes(total) : "started"}\n`);
    const end = (summary: string) => {
      t.final = summary;
      if (this.tty) {
        this.draw(true);
        // Finished tasks at the top scroll away; the rest keep their lines.
        while (this.live.length && this.live[0].final !== undefined) {
          this.live.shift();
          this.drawn--;
        }
      } else this.write(`nsrun: ${label}: ${summary}\n`);
    };
    return {
      add: (n) => {
        t.done += n;
        this.draw(false);
      },
      set: (n) => {
        t.done = n;
        this.draw(false);
      },
      done: end,
      fail: end,
    };
  }

  /** Plain line above the bars. */
  line(text: string): void {
    if (!this.tty) return this.write(`nsrun: ${text}\n`);
    this.clear();
    this.write(`nsrun: ${text}\n`);
    this.draw(true);
  }

  private clear(): void {
    if (this.drawn) this.write(`\x1b[${this.drawn}A\x1b[J`);
    this.drawn = 0;
  }

  private draw(force: boolean): void {
    if (!this.tty) return;
    const now = performance.now();
    if (!force && now - this.lastDraw < 100) return; // at most 10 redraws a second
    this.lastDraw = now;
    let out = this.drawn ? `\x1b[${this.drawn}A` : "";
    for (const t of this.live) out += `\r\x1b[K${render(t)}\n`;
    this.drawn = this.live.length;
    this.write(out);
  }
}

function render(t: { label: string; total: number; done: number; final?: string }): string {
  if (t.final !== undefined) return `${t.label}  ${t.final}`;
  if (!t.total) return `${t.label}  ${formatBytes(t.done)}`;
  const frac = Math.min(1, t.done / t.total);
  const full = Math.round(frac * WIDTH);
  return `${t.label}  [${"=".repeat(full)}${" ".repeat(WIDTH - full)}] ${formatBytes(t.done)} / ${formatBytes(t.total)}`;
}
