// The kernel's rules, as experiments: namespaces(7) and uts_namespaces(7).
// Each test is one fact from the man page, done through nsrun's ffi/ layer in a probe process
// (probe.ts); the assertion messages name the fact that did not hold.
import { afterAll, expect, test } from "bun:test";
import { readFileSync } from "node:fs";
import { removeProbe, runProbe } from "./probe";

afterAll(removeProbe);

test("namespaces(7), 'The namespaces API': an ordinary user may create a user namespace, and a mount namespace only inside one (CLONE_NEWNS alone is EPERM)", async () => {
  const r = await runProbe("create-namespaces", { as: "user" });
  expect(r.mountFirst, "an ordinary user's unshare(CLONE_NEWNS) should fail with EPERM (it needs CAP_SYS_ADMIN)").toBe("EPERM");
  expect(r.user, "an ordinary user's unshare(CLONE_NEWUSER) should succeed: no privilege is needed for a user namespace").toBe("0");
  expect(r.mountAfter, "inside its own user namespace the same process's unshare(CLONE_NEWNS) should succeed").toBe("0");
});

test("uts_namespaces(7), DESCRIPTION: a new UTS namespace starts with the caller's hostname, and changing it there does not change the host's", async () => {
  const host = readFileSync("/proc/sys/kernel/hostname", "utf8").trim();
  const r = await runProbe("uts", { as: "user" });
  expect(r.unshare, "unshare(CLONE_NEWUSER|CLONE_NEWUTS) should succeed for an ordinary user").toBe("0");
  expect(r.utsAfter, "the probe should be in a new UTS namespace after the unshare").not.toBe(r.utsBefore);
  expect(r.inside, "a new UTS namespace should start with a copy of the caller's hostname").toBe(host);
  expect(r.set, "sethostname(2) should succeed in a UTS namespace owned by the caller's user namespace").toBe("0");
  expect(r.after, "the new UTS namespace should show the hostname set in it").toBe("nsrun-kernel-uts");
  expect(readFileSync("/proc/sys/kernel/hostname", "utf8").trim(), "the host's hostname should not change when a child UTS namespace changes its own").toBe(host);
});
