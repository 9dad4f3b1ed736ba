// The kernel's rules, as experiments: pid_namespaces(7), with namespaces(7) and clone(2) where they
// state the rule. Each test is one fact, done through nsrun's ffi/ layer in a probe process
// (probe.ts); the assertion messages name the fact that did not hold. A probe that unshares a PID
// namespace is root's when the tests run as root, and otherwise makes a user namespace with it.
import { afterAll, expect, test } from "bun:test";
import { type ProbeResult, removeProbe, runProbe } from "./probe";

afterAll(removeProbe);

function once(run: () => Promise<ProbeResult>): () => Promise<ProbeResult> {
  let result: Promise<ProbeResult> | null = null;
  return () => (result ??= run());
}

const pidUnshare = once(() => runProbe("pid-unshare"));
const initExit = once(() => runProbe("pid-init-exit"));

test("pid_namespaces(7), 'setns(2) and unshare(2) semantics': unshare(CLONE_NEWPID) moves the caller's children, not the caller", async () => {
  const r = await pidUnshare();
  expect(r.unshare, `unshare(${r.flags}) should succeed`).toBe("0");
  expect(r.after.pid, "getpid(2) should return the same PID after unshare(CLONE_NEWPID)").toBe(r.before.pid);
  expect(r.after.ns, "/proc/self/ns/pid should not change with unshare(CLONE_NEWPID)").toBe(r.before.ns);
  expect(r.withChild.childNs, "the first child should be in a PID namespace other than the caller's").not.toBe(r.before.ns);
  expect(r.withChild.childNs, "the first child's PID namespace should be the caller's pid_for_children").toBe(r.withChild.forChildren);
});

test("namespaces(7), 'The /proc/[pid]/ns/ directory': pid_for_children has no value after unshare(CLONE_NEWPID) until the first child is created", async () => {
  const r = await pidUnshare();
  expect(r.before.forChildren, "before the unshare, pid_for_children should be the process's own PID namespace").toBe(r.before.ns);
  // The man page says readlink(2) returns an empty buffer; Linux 6.x fails it with ENOENT. Either way: no namespace.
  expect(r.after.forChildren, "right after unshare(CLONE_NEWPID), pid_for_children should name no namespace yet").not.toMatch(/^pid:\[\d+\]$/);
  expect(r.withChild.forChildren, "once the first child exists, pid_for_children should name a PID namespace").toMatch(/^pid:\[\d+\]$/);
  expect(r.withChild.forChildren, "pid_for_children should then differ from /proc/self/ns/pid").not.toBe(r.after.ns);
});

test("pid_namespaces(7), 'setns(2) and unshare(2) semantics': a process may call unshare(CLONE_NEWPID) only once (EINVAL the second time)", async () => {
  const r = await pidUnshare();
  expect(r.unshare, "the first unshare(CLONE_NEWPID) should succeed").toBe("0");
  expect(r.second, "a second unshare(CLONE_NEWPID) by the same process should fail with EINVAL").toBe("EINVAL");
});

test("pid_namespaces(7), 'The namespace init process': the first child after unshare(CLONE_NEWPID) is PID 1 of the new namespace", async () => {
  const r = await pidUnshare();
  expect(r.first, `the first child should see itself as PID 1 (its output: ${JSON.stringify(r.output)})`).toBe(1);
  expect(r.childPidOutside, "the caller should see the same child under a PID of its own namespace, not 1").not.toBe(1);
});

test("pid_namespaces(7), 'Adoption of orphaned children': an orphan in the namespace is re-parented to its PID 1", async () => {
  const r = await pidUnshare();
  expect(r.orphanParent, `getppid(2) of an orphaned grandchild should be 1, the namespace's init (output: ${JSON.stringify(r.output)})`).toBe(1);
});

test("pid_namespaces(7), 'The namespace init process': when PID 1 exits, the kernel kills the rest of the namespace, and a later fork into it fails with ENOMEM", async () => {
  const r = await initExit();
  expect(r.unshare, `unshare(${r.flags}) should succeed`).toBe("0");
  const nspids = r.membersWhileRunning.map((m: { nspid: string }) => m.nspid.split("\t").pop());
  expect(nspids.sort(), `while init runs, the namespace should hold init (PID 1) and its long sleep (output: ${JSON.stringify(r.output)})`).toEqual(["1", String(r.sleeperInside)].sort());
  expect(r.initReaped, "waitpid(2) should reap the namespace's init after it exits").toBe(true);
  expect(r.membersAfter, "once init has exited, no process should be left in the namespace (the 60 s sleep is killed)").toEqual([]);
  expect(r.spawnAfter, "starting a new process in a PID namespace whose init has exited should fail with ENOMEM").toBe("ENOMEM");
});

test("pid_namespaces(7), 'Compatibility of CLONE_NEWPID with other CLONE_* flags': clone(2) with CLONE_NEWPID|CLONE_THREAD is EINVAL", async () => {
  // As an ordinary user with a process limit of 0: a clone(2) that passes the flag checks stops at the
  // limit with EAGAIN and creates nothing, so the control below is safe to make.
  const r = await runProbe("clone-newpid-thread", { as: "user", threads: "many" });
  expect(r.skipped, "the probe should be able to run the experiment").toBeUndefined();
  expect(r.thread, "control: CLONE_THREAD|CLONE_SIGHAND|CLONE_VM alone should pass the flag checks and stop at the process limit (EAGAIN)").toBe(
    "EAGAIN",
  );
  expect(r.threadNewpid, "CLONE_NEWPID together with CLONE_THREAD should fail with EINVAL").toBe("EINVAL");
});

test("clone(2), ERRORS (see pid_namespaces(7)): after unshare(CLONE_NEWPID) a process can no longer create threads: clone(CLONE_THREAD) is EINVAL", async () => {
  // Why a PID namespace is made by clone3(2) with CLONE_NEWPID (core/stages/namespaces.ts), never by an unshare before more threads.
  const userOnly = await runProbe("thread-after-unshare", { as: "user", args: ["user"] });
  expect(userOnly.unshare, "unshare(CLONE_NEWUSER) should succeed for an ordinary user").toBe("0");
  expect(userOnly.clone, "control: after unshare(CLONE_NEWUSER) alone, a thread's clone(2) should pass the flag checks and stop at the process limit (EAGAIN)").toBe(
    "EAGAIN",
  );
  const withPid = await runProbe("thread-after-unshare", { as: "user", args: ["newpid"] });
  expect(withPid.unshare, "unshare(CLONE_NEWUSER|CLONE_NEWPID) should succeed for an ordinary user").toBe("0");
  expect(withPid.clone, "after unshare(CLONE_NEWPID), clone(2) with CLONE_THREAD should fail with EINVAL").toBe("EINVAL");
});
