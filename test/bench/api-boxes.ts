// For `bun run bench`: one Bun process starts N boxes with core/api.ts runBox one after the other,
// side by side with N bubblewrap processes it starts the same way (Bun.spawn, waited for), in three
// alternating rounds, and prints the median time per box of each; then N boxes at once.
//   bun test/bench/api-boxes.ts ROOTFS N [BWRAP COMMAND LINE]
import { runBox } from "../../core/api";

const [rootfs, count, bwrap] = process.argv.slice(2);
const n = Number(count);
const config = { rootfs };
await runBox(config, { args: ["/bin/true"] }); // load and warm up once (and plan: later boxes start from the cache)

async function boxes(): Promise<number> {
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const r = await runBox(config, { args: ["/bin/true"] });
    if (r.exitCode !== 0) throw new Error(`box ${i} exited ${r.exitCode}`);
  }
  return (performance.now() - t0) / n;
}

async function bwraps(): Promise<number> {
  const argv = bwrap.split(" ");
  const t0 = performance.now();
  for (let i = 0; i < n; i++) {
    const p = Bun.spawn(argv, { stdio: ["ignore", "ignore", "ignore"] });
    if ((await p.exited) !== 0) throw new Error(`bwrap exited ${p.exitCode}`);
  }
  return (performance.now() - t0) / n;
}

const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];
const ours: number[] = [];
const theirs: number[] = [];
for (let round = 0; round < 3; round++) {
  ours.push(await boxes());
  if (bwrap) theirs.push(await bwraps());
}
const t1 = performance.now();
const all = await Promise.all(Array.from({ length: n }, () => runBox(config, { args: ["/bin/true"] })));
const atOnce = performance.now() - t1;
if (all.some((r) => r.exitCode !== 0)) throw new Error("a box failed");
const side = bwrap ? `, bwrap ${median(theirs).toFixed(2)} ms per box (${(median(ours) / median(theirs)).toFixed(2)}x)` : "";
console.log(`${n} boxes in a row: runBox ${median(ours).toFixed(2)} ms per box${side}; ${n} at once: ${atOnce.toFixed(0)} ms in all`);
