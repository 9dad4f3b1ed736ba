// For `bun run bench`: one Bun process starts N boxes with core/api.ts runBox, first one after the
// other, then all at once, and prints the time per box and the total.
//   bun test/bench/api-boxes.ts ROOTFS N
import { runBox } from "../../core/api";

const [rootfs, count] = process.argv.slice(2);
const n = Number(count);
const config = { rootfs };
await runBox(config, { args: ["/bin/true"] }); // load and warm up once
const t0 = performance.now();
for (let i = 0; i < n; i++) {
  const r = await runBox(config, { args: ["/bin/true"] });
  if (r.exitCode !== 0) throw new Error(`box ${i} exited ${r.exitCode}`);
}
const inRow = (performance.now() - t0) / n;
const t1 = performance.now();
const all = await Promise.all(Array.from({ length: n }, () => runBox(config, { args: ["/bin/true"] })));
const atOnce = performance.now() - t1;
if (all.some((r) => r.exitCode !== 0)) throw new Error("a box failed");
console.log(`${n} boxes in a row: ${inRow.toFixed(2)} ms per box; ${n} at once: ${atOnce.toFixed(0)} ms in all`);
