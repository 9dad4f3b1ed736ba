// The kernel's rules, as experiments: user_namespaces(7), with unshare(2) where it states the rule.
// Each test is one fact from the man page, done through nsrun's ffi/ layer in a probe process
// (probe.ts), most of them as the ordinary user nsrun-test; the assertion messages name the fact
// that did not hold.
import { afterAll, expect, test } from "bun:test";
import { chmodSync, mkdtempSync, rmSync } from "node:fs";
import { IS_ROOT, type ProbeResult, removeProbe, runProbe } from "./probe";

afterAll(removeProbe);

/** Runs a probe once, however many tests read its answer. */
function once(run: () => Promise<ProbeResult>): () => Promise<ProbeResult> {
  let result: Promise<ProbeResult> | null = null;
  return () => (result ??= run());
}

/** An empty folder for the tmpfs mount experiments; nothing is left mounted on it. */
const mountDir = mkdtempSync("/tmp/nsrun-kernel-mnt-");
chmodSync(mountDir, 0o755);
afterAll(() => rmSync(mountDir, { recursive: true, force: true }));

const idMaps = once(() => runProbe("id-maps", { as: "user" }));
const userCaps = once(() => runProbe("capabilities", { as: "user", args: [mountDir] }));

/** The CapEff mask with every capability up to /proc/sys/kernel/cap_last_cap. */
const fullSet = (lastCap: number) => (1n << BigInt(lastCap + 1)) - 1n;
const mask = (hex: string) => BigInt(`0x${hex}`);

test("user_namespaces(7), DESCRIPTION (the root directory): chroot(2) by an ordinary user fails with EPERM, and succeeds inside a user namespace of its own", async () => {
  const plain = await runProbe("chroot", { as: "user", args: ["plain"] });
  expect(plain.chroot, 'an ordinary user\'s chroot("/") should fail with EPERM (it needs CAP_SYS_CHROOT)').toBe("EPERM");
  const inside = await runProbe("chroot", { as: "user", args: ["userns"] });
  expect(inside.user, "unshare(CLONE_NEWUSER) should succeed for an ordinary user").toBe("0");
  expect(inside.chroot, 'chroot("/") should succeed inside the user namespace the process created').toBe("0");
});

test("user_namespaces(7), 'Defining user and group ID mappings: writing to uid_map and gid_map': uid_map can be written only once (the second write is EPERM)", async () => {
  const r = await idMaps();
  expect(r.user, "unshare(CLONE_NEWUSER) should succeed for an ordinary user").toBe("0");
  expect(r.uidMapFirst, "the first write of uid_map (mapping the caller's own uid) should succeed").toBe("0");
  expect(r.uidMapSecond, "a second write of uid_map should fail with EPERM").toBe("EPERM");
  expect(r.uidMapNow, "uid_map should still hold the first mapping").toEqual(["0", String(r.outside.uid), "1"]);
});

test("user_namespaces(7), 'The /proc/pid/setgroups file': an ordinary user may write gid_map only after writing \"deny\" to setgroups (EPERM before)", async () => {
  const r = await idMaps();
  expect(r.gidMapWithoutDeny, 'gid_map written by an ordinary user before setgroups is "deny" should fail with EPERM').toBe("EPERM");
  expect(r.deny, 'writing "deny" to /proc/self/setgroups should succeed before gid_map is written').toBe("0");
  expect(r.gidMap, 'the same gid_map write should succeed once setgroups is "deny"').toBe("0");
});

test("user_namespaces(7), 'Unmapped user and group IDs': an id the map leaves out shows as the overflow id (65534); the caller's own id shows as 0", async () => {
  const r = await idMaps();
  expect(r.overflowuid, "/proc/sys/kernel/overflowuid should hold the default overflow uid").toBe(65534);
  expect(r.unmapped.uid, "before uid_map is written, getuid(2) should return the overflow uid").toBe(r.overflowuid);
  expect(r.rootDir, 'stat("/"), owned by root, should show the overflow uid and gid when only the caller is mapped').toEqual({
    uid: r.overflowuid,
    gid: r.overflowgid,
  });
  expect(r.ownDir, "stat of a file the caller owns (/proc/self) should show the uid and gid it is mapped to, 0").toEqual({ uid: 0, gid: 0 });
  expect(r.mapped.uid, "after uid_map is written, getuid(2) should return the mapped uid 0").toBe(0);
});

test("user_namespaces(7), 'Interaction with system calls that change process UIDs or GIDs': setresuid(2) fails until uid_map is written, then works for a mapped uid", async () => {
  const r = await idMaps();
  expect(r.unmapped.setresuid, "setresuid(0, 0, 0) before uid_map is written should fail (EINVAL: uid 0 is not mapped)").toBe("EINVAL");
  expect(r.mapped.setresuid, "setresuid(0, 0, 0) after uid_map maps uid 0 should succeed").toBe("0");
});

test("user_namespaces(7), 'Capabilities': a process that creates a user namespace has the full set of capabilities in it (CapEff up to cap_last_cap)", async () => {
  const r = await userCaps();
  expect(r.user, "unshare(CLONE_NEWUSER) should succeed for an ordinary user").toBe("0");
  expect(mask(r.capBefore), "the ordinary user should start with no effective capabilities").toBe(0n);
  expect(r.userAfter, "the probe should be in a new user namespace after the unshare").not.toBe(r.userBefore);
  expect(mask(r.capAfter), `CapEff after unshare(CLONE_NEWUSER) should have every bit up to cap_last_cap (${r.capLastCap})`).toBe(
    fullSet(r.capLastCap),
  );
});

test("user_namespaces(7), 'Capabilities' and 'Interaction of user namespaces and other types of namespaces': those capabilities do not reach namespaces the parent user namespace owns", async () => {
  const r = await userCaps();
  expect(r.user, "unshare(CLONE_NEWUSER) should succeed for an ordinary user").toBe("0");
  expect(r.sethostnameShared, "sethostname(2) in the UTS namespace shared with the parent should fail with EPERM").toBe("EPERM");
  expect(r.mountShared, "a tmpfs mount in the mount namespace shared with the parent should fail with EPERM").toBe("EPERM");
  // Control: the same calls in UTS and mount namespaces that the new user namespace owns.
  expect(r.own, "unshare(CLONE_NEWUTS|CLONE_NEWNS) inside the new user namespace should succeed").toBe("0");
  expect(r.sethostnameOwn, "sethostname(2) in a UTS namespace owned by the new user namespace should succeed").toBe("0");
  expect(r.mountOwn, "a tmpfs mount in a mount namespace owned by the new user namespace should succeed").toBe("0");
});

if (!IS_ROOT) console.warn("skipped: the experiment with root's own user namespace needs the tests to run as root");
test.skipIf(!IS_ROOT)("user_namespaces(7), 'Capabilities': even root has no capabilities in the parent once it has created a user namespace", async () => {
  const r = await runProbe("capabilities", { as: "self", args: [mountDir] });
  expect(r.user, "root's unshare(CLONE_NEWUSER) should succeed").toBe("0");
  expect(mask(r.capBefore) & (1n << 21n), "root should start with CAP_SYS_ADMIN in the initial user namespace").not.toBe(0n);
  expect(mask(r.capAfter), "root's CapEff in the new user namespace should be the full set").toBe(fullSet(r.capLastCap));
  expect(r.sethostnameShared, "root's sethostname(2) in the host's UTS namespace, from inside its new user namespace, should fail with EPERM").toBe(
    "EPERM",
  );
  expect(r.mountShared, "root's tmpfs mount in the host's mount namespace, from inside its new user namespace, should fail with EPERM").toBe(
    "EPERM",
  );
  expect(r.mountOwn, "the same mount in a mount namespace owned by the new user namespace should succeed").toBe("0");
});

test("unshare(2), CLONE_NEWUSER (see user_namespaces(7)): a multi-threaded process cannot create a user namespace (EINVAL); a single-threaded one can", async () => {
  const many = await runProbe("userns-threads", { as: "user", threads: "many" });
  expect(many.tasks, "a Bun process without the single-thread settings should have several threads").toBeGreaterThan(1);
  expect(many.user, "unshare(CLONE_NEWUSER) in a multi-threaded process should fail with EINVAL").toBe("EINVAL");
  const single = await runProbe("userns-threads", { as: "user" });
  expect(single.tasks, "a Bun process with the single-thread settings should have one thread").toBe(1);
  expect(single.user, "unshare(CLONE_NEWUSER) in a single-threaded process should succeed").toBe("0");
});
