// For test/hostile.test.ts: swap two paths with renameat2(RENAME_EXCHANGE) as fast as possible, as an
// attacker who can write a folder above a bind source or a rootfs would, until killed.
//   bun test/race-flipper.ts PATH_A PATH_B
import { exchange } from "./kernel/experiments";

const [a, b] = process.argv.slice(2);
for (;;) if (exchange(a, b) !== "0") process.exit(1);
