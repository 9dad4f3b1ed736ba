// A compiled tape in a form that outlives the process that compiled it: its binary encoded at
// address 0 with the offsets of every absolute address in it (relocations), and what the host needs
// to report on it (each op's name, text and step; the stage markers). core/host/tapecache.ts keeps
// these on disk; loading one costs a copy and a few hundred additions instead of planning, compiling
// and encoding. The op descriptions are parsed only when something asks for them (a failure,
// --trace).
import { HEADER } from "../../ffi/executor/protocol";
import type { StageTitle } from "../pipeline";
import type { Step, Tape } from "./tape";

/** What the host reads of a tape's ops: enough for errors, --trace and progress. */
export interface OpInfo {
  code: number;
  name: string;
  text: string;
  step: Step;
}

/** What the launcher needs beyond the ops: where reports go, the fds kept, the records it can send, its command. */
export interface LaunchInfo {
  reportFd: number;
  kept: number[];
  expects: { syncs: number[]; pid: boolean; hooks: boolean; execFailed: boolean };
  command: { args: string[]; paths: string[] } | null;
}

/** What launch() (core/launch/launch.ts) needs of a tape: a Tape or a FrozenTape. */
export interface RunnableTape {
  readonly reportFd: number;
  readonly kept: readonly number[];
  readonly expects: { readonly syncs: ReadonlySet<number> | readonly number[]; readonly pid: boolean; readonly hooks: boolean; readonly execFailed: boolean };
  readonly command: { args: string[]; paths: string[] } | null;
  readonly ops: ArrayLike<OpInfo> & { forEach(f: (op: OpInfo, i: number) => void): void };
  /** How many ops: ops.length, without decoding the descriptions of a frozen tape. */
  readonly opCount: number;
  readonly stages: ReadonlyArray<readonly [index: number, title: StageTitle]>;
  readonly cgroupFd: number;
  readonly cloneFlags: number;
  encode(alloc: (size: number) => { bytes: Uint8Array; address: number }, trace: boolean): { bytes: Uint8Array; address: number };
}

export interface FrozenParts {
  /** The binary, encoded at address 0. */
  image: Uint8Array;
  /** Byte offsets of the 8-byte absolute addresses in `image`. */
  relocs: Uint32Array;
  /** Whether `image` has room for results (the layout differs). */
  trace: boolean;
  cloneFlags: number;
  cgroupFd: number;
  launch: LaunchInfo;
  /** JSON of { ops: [code, name, text, step index][], steps, stages }, or how to get it: parsed on first use. */
  meta: string | (() => string);
}

export class FrozenTape implements RunnableTape {
  private parsed: { ops: OpInfo[]; stages: Array<[number, StageTitle]> } | null = null;
  constructor(readonly parts: FrozenParts) {}

  /** Freeze a compiled tape. `trace`: the layout with room for results, as --trace runs it. */
  static of(tape: Tape, trace: boolean): FrozenTape {
    const relocs: number[] = [];
    const { bytes } = tape.encode((size) => ({ bytes: new Uint8Array(size), address: 0 }), trace, relocs);
    // Ops of one step share its object: stored once, by index.
    const steps: Step[] = [];
    const index = new Map<Step, number>();
    const ops = tape.ops.map((op) => {
      let i = index.get(op.step);
      if (i === undefined) index.set(op.step, (i = steps.push(op.step) - 1));
      return [op.code, op.name, op.text, i];
    });
    return new FrozenTape({
      image: bytes,
      relocs: Uint32Array.from(relocs),
      trace,
      cloneFlags: tape.cloneFlags,
      cgroupFd: tape.cgroupFd,
      launch: { reportFd: tape.reportFd, kept: [...tape.kept], expects: { ...tape.expects, syncs: [...tape.expects.syncs] }, command: tape.command },
      meta: JSON.stringify({ ops, steps, stages: tape.stages }),
    });
  }

  private get info() {
    if (!this.parsed) {
      const { ops, steps, stages } = JSON.parse(this.metaText()) as { ops: Array<[number, string, string, number]>; steps: Step[]; stages: Array<[number, StageTitle]> };
      this.parsed = { ops: ops.map(([code, name, text, step]) => ({ code, name, text, step: steps[step] })), stages };
    }
    return this.parsed;
  }
  /** The op descriptions' JSON. */
  metaText(): string {
    const { meta } = this.parts;
    return typeof meta === "string" ? meta : meta();
  }

  get ops(): OpInfo[] {
    return this.info.ops;
  }
  get stages(): Array<[number, StageTitle]> {
    return this.info.stages;
  }
  /** From the image's header (protocol.h nops): the descriptions are decoded only for an error or --trace. */
  get opCount(): number {
    const { image } = this.parts;
    return new DataView(image.buffer, image.byteOffset, image.byteLength).getUint32(HEADER.nops, true);
  }
  get cgroupFd(): number {
    return this.parts.cgroupFd;
  }
  get cloneFlags(): number {
    return this.parts.cloneFlags;
  }
  get reportFd(): number {
    return this.parts.launch.reportFd;
  }
  get kept(): number[] {
    return this.parts.launch.kept;
  }
  get expects(): LaunchInfo["expects"] {
    return this.parts.launch.expects;
  }
  get command(): LaunchInfo["command"] {
    return this.parts.launch.command;
  }

  /** A copy at `alloc`'s address, every absolute address moved there. */
  encode(alloc: (size: number) => { bytes: Uint8Array; address: number }, trace: boolean): { bytes: Uint8Array; address: number } {
    if (trace !== this.parts.trace) throw new Error("tape cache: a tape frozen for --trace runs only with it, and one without only without");
    const { image, relocs } = this.parts;
    const out = alloc(image.length);
    out.bytes.set(image);
    // Little-endian 64-bit additions in two 32-bit halves (addresses stay below 2^53): BigInt
    // arithmetic for each of several hundred slots costs more than the copy.
    const view = new DataView(out.bytes.buffer, out.bytes.byteOffset, out.bytes.byteLength);
    const baseLo = out.address % 0x100000000;
    const baseHi = Math.floor(out.address / 0x100000000);
    // An indexed loop: for...of over a typed array costs about half a microsecond a slot before
    // the code is compiled (a few hundred slots: 0.2 ms of a cached box's start).
    for (let i = 0; i < relocs.length; i++) {
      const at = relocs[i];
      const lo = view.getUint32(at, true) + baseLo;
      view.setUint32(at, lo % 0x100000000, true);
      view.setUint32(at + 4, view.getUint32(at + 4, true) + baseHi + Math.floor(lo / 0x100000000), true);
    }
    return out;
  }
}
