// Which signals nsrun passes on to the box, and how.
//
// PID 1 of a PID namespace gets no signal it has no handler for, not even SIGTERM from outside
// (pid_namespaces(7)); only SIGKILL and SIGSTOP are forced. An ordinary program run as a box's PID 1
// would therefore shrug off Ctrl-C. nsrun makes it behave as it would outside a box: when the box's
// PID 1 neither catches nor ignores a signal whose default action ends the process, nsrun sends
// SIGKILL instead and reports 128+N for the signal the user sent.

export const FORWARDED_SIGNALS = ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT", "SIGUSR1", "SIGUSR2", "SIGWINCH"] as const;
export type ForwardedSignal = (typeof FORWARDED_SIGNALS)[number];

export const SIGNAL_NUMBERS: Record<ForwardedSignal, number> = {
  SIGHUP: 1,
  SIGINT: 2,
  SIGQUIT: 3,
  SIGUSR1: 10,
  SIGUSR2: 12,
  SIGTERM: 15,
  SIGWINCH: 28,
};

/** Signals whose default action ignores them (signal(7)); the others end the process. */
// An object, not a Set made from an array: that costs a box's start about 0.07 ms (core/pipeline.ts).
const DEFAULT_IGNORED: Partial<Record<ForwardedSignal, true>> = { SIGWINCH: true };

/** Bit N-1 of a SigCgt/SigIgn hex mask from /proc/PID/status. */
export function maskHas(hexMask: string, signo: number): boolean {
  return ((BigInt(`0x${hexMask}`) >> BigInt(signo - 1)) & 1n) === 1n;
}

export type Delivery = "forward" | "kill";

/**
 * How to deliver `sig` to the box's PID 1. `status` is its /proc/PID/status text, or null when it
 * is nsrun's own init (which handles every forwarded signal).
 */
export function deliveryFor(sig: ForwardedSignal, status: string | null): Delivery {
  if (status === null || DEFAULT_IGNORED[sig]) return "forward";
  const field = (name: string) => status.match(new RegExp(`^${name}:\\s*([0-9a-f]+)`, "m"))?.[1] ?? "0";
  const signo = SIGNAL_NUMBERS[sig];
  if (maskHas(field("SigCgt"), signo) || maskHas(field("SigIgn"), signo)) return "forward";
  return "kill";
}
