// The OCI front end, part 1: config.json (runtime-spec 1.x) validated with valibot. Every object is
// strict: an unknown key is an error naming its JSON path, never silently ignored, because a field a
// runtime skips (a mask, a capability set, a seccomp rule) is isolation the user thinks they have.
// Fields the spec defines but nsrun cannot honour are in the schema and refused by name in plan.ts.
import { readFileSync } from "node:fs";
import { join, resolve } from "node:path";
import * as v from "valibot";
import { ConfigError } from "../errors";
import { keyPath } from "../stages/config";
import { MAX_ID, rangeProblem } from "../stages/ids";

const str = v.string();
const u32 = v.pipe(v.number(), v.integer("expected a whole number"), v.minValue(0, "expected 0 or more"), v.maxValue(0xffffffff, "expected a 32-bit id"));
// Sizes and limits are int64/uint64 in Go; JSON numbers past 2^53 are imprecise, but still mean "very large".
const int = v.pipe(v.number(), v.integer("expected a whole number"));
const strings = v.array(str);
/** A process's or a mapping's id: 4294967295 is (uid_t)-1, no id at all (core/stages/ids.ts). */
const id = v.pipe(v.number(), v.integer("expected a whole number"), v.minValue(0, "expected 0 or more"), v.maxValue(MAX_ID, `expected an id 0 to ${MAX_ID} (4294967295 is (uid_t)-1, which setresuid(2) reads as "unchanged")`));
const idMapping = v.pipe(
  v.strictObject({ containerID: id, hostID: id, size: u32 }),
  v.check((m) => rangeProblem(m.containerID, m.hostID, m.size) === null, `expected a size of 1 or more that keeps both ranges within the ids 0 to ${MAX_ID}`),
);

const Hook = v.strictObject({
  path: v.pipe(str, v.check((s) => s.startsWith("/"), "expected an absolute path")),
  args: v.optional(strings),
  env: v.optional(strings),
  timeout: v.optional(v.pipe(int, v.minValue(1, "expected seconds above 0"))),
});

const Capabilities = v.strictObject({
  bounding: v.optional(strings),
  effective: v.optional(strings),
  inheritable: v.optional(strings),
  permitted: v.optional(strings),
  ambient: v.optional(strings),
});

const Process = v.strictObject({
  terminal: v.optional(v.boolean()),
  consoleSize: v.optional(v.strictObject({ height: u32, width: u32 })),
  user: v.strictObject({
    uid: id,
    gid: id,
    umask: v.optional(v.pipe(int, v.minValue(0), v.maxValue(0o777, "expected a mode 0-0777"))),
    additionalGids: v.optional(v.array(id)),
    username: v.optional(str),
  }),
  args: v.pipe(strings, v.minLength(1, "expected at least the command")),
  commandLine: v.optional(str),
  env: v.optional(v.array(v.pipe(str, v.check((s) => s.includes("=") && !s.startsWith("="), 'expected "NAME=value"')))),
  cwd: v.pipe(str, v.check((s) => s.startsWith("/"), "expected an absolute path")),
  capabilities: v.optional(Capabilities),
  rlimits: v.optional(v.array(v.strictObject({ type: str, hard: v.pipe(v.number(), v.minValue(0)), soft: v.pipe(v.number(), v.minValue(0)) }))),
  noNewPrivileges: v.optional(v.boolean()),
  apparmorProfile: v.optional(str),
  oomScoreAdj: v.optional(v.pipe(int, v.minValue(-1000), v.maxValue(1000))),
  selinuxLabel: v.optional(str),
  ioPriority: v.optional(v.unknown()),
  scheduler: v.optional(v.unknown()),
  execCPUAffinity: v.optional(v.unknown()),
});

const Mount = v.strictObject({
  destination: v.pipe(str, v.minLength(1, "expected a path")),
  source: v.optional(str),
  options: v.optional(strings),
  type: v.optional(str),
  uidMappings: v.optional(v.array(idMapping)),
  gidMappings: v.optional(v.array(idMapping)),
});

/** A time namespace's offset of one clock: secs (negative too) and nanosecs 0..999999999. */
const ClockOffset = v.strictObject({
  secs: v.optional(v.pipe(int, v.minValue(-4_000_000_000, "expected at most 4000000000 seconds either way"), v.maxValue(4_000_000_000, "expected at most 4000000000 seconds either way"))),
  nanosecs: v.optional(v.pipe(int, v.minValue(0, "expected 0 to 999999999"), v.maxValue(999_999_999, "expected 0 to 999999999"))),
});

const Namespace = v.strictObject({
  type: v.picklist(["pid", "network", "mount", "ipc", "uts", "user", "cgroup", "time"], "expected pid, network, mount, ipc, uts, user, cgroup or time"),
  path: v.optional(str),
});

const Device = v.strictObject({
  type: v.picklist(["c", "b", "u", "p"], 'expected "c", "b", "u" or "p"'),
  path: v.pipe(str, v.check((s) => s.startsWith("/dev/"), "expected a path below /dev/")),
  major: v.optional(int),
  minor: v.optional(int),
  fileMode: v.optional(u32),
  uid: v.optional(u32),
  gid: v.optional(u32),
});

const DeviceRule = v.strictObject({
  allow: v.boolean(),
  type: v.optional(v.picklist(["a", "c", "b"], 'expected "a", "c" or "b"')),
  major: v.optional(v.nullable(int)),
  minor: v.optional(v.nullable(int)),
  access: v.optional(v.pipe(str, v.regex(/^[rwm]*$/, 'expected letters of "rwm"'))),
});

const Throttle = v.array(v.strictObject({ major: int, minor: int, rate: int }));

const Resources = v.strictObject({
  devices: v.optional(v.array(DeviceRule)),
  memory: v.optional(
    v.strictObject({
      limit: v.optional(int),
      reservation: v.optional(int),
      swap: v.optional(int),
      kernel: v.optional(int),
      kernelTCP: v.optional(int),
      swappiness: v.optional(v.pipe(int, v.minValue(0), v.maxValue(100))),
      disableOOMKiller: v.optional(v.boolean()),
      useHierarchy: v.optional(v.boolean()),
      checkBeforeUpdate: v.optional(v.boolean()),
    }),
  ),
  cpu: v.optional(
    v.strictObject({
      shares: v.optional(int),
      quota: v.optional(int),
      burst: v.optional(int),
      period: v.optional(int),
      realtimeRuntime: v.optional(int),
      realtimePeriod: v.optional(int),
      cpus: v.optional(str),
      mems: v.optional(str),
      idle: v.optional(int),
    }),
  ),
  pids: v.optional(v.strictObject({ limit: int })),
  blockIO: v.optional(
    v.strictObject({
      weight: v.optional(int),
      leafWeight: v.optional(int),
      weightDevice: v.optional(v.array(v.strictObject({ major: int, minor: int, weight: v.optional(int), leafWeight: v.optional(int) }))),
      throttleReadBpsDevice: v.optional(Throttle),
      throttleWriteBpsDevice: v.optional(Throttle),
      throttleReadIOPSDevice: v.optional(Throttle),
      throttleWriteIOPSDevice: v.optional(Throttle),
    }),
  ),
  hugepageLimits: v.optional(v.array(v.unknown())),
  network: v.optional(v.unknown()),
  rdma: v.optional(v.unknown()),
  unified: v.optional(v.record(str, str)),
});

const Seccomp = v.strictObject({
  defaultAction: str,
  defaultErrnoRet: v.optional(int),
  architectures: v.optional(strings),
  flags: v.optional(strings),
  listenerPath: v.optional(str),
  listenerMetadata: v.optional(str),
  syscalls: v.optional(
    v.array(
      v.strictObject({
        names: v.pipe(strings, v.minLength(1, "expected at least one syscall name")),
        action: str,
        errnoRet: v.optional(int),
        args: v.optional(v.array(v.strictObject({ index: int, value: v.number(), valueTwo: v.optional(v.number()), op: str }))),
      }),
    ),
  ),
});

const Linux = v.strictObject({
  namespaces: v.optional(v.array(Namespace)),
  uidMappings: v.optional(v.array(idMapping)),
  gidMappings: v.optional(v.array(idMapping)),
  timeOffsets: v.optional(v.strictObject({ monotonic: v.optional(ClockOffset), boottime: v.optional(ClockOffset) })),
  devices: v.optional(v.array(Device)),
  cgroupsPath: v.optional(str),
  resources: v.optional(Resources),
  intelRdt: v.optional(v.unknown()),
  sysctl: v.optional(v.record(str, str)),
  seccomp: v.optional(Seccomp),
  rootfsPropagation: v.optional(str),
  maskedPaths: v.optional(strings),
  readonlyPaths: v.optional(strings),
  mountLabel: v.optional(str),
  personality: v.optional(v.unknown()),
});

export const SpecSchema = v.strictObject({
  ociVersion: v.pipe(str, v.regex(/^1\.\d+\.\d+/, 'expected a runtime-spec 1.x version, e.g. "1.0.2"')),
  process: v.optional(Process),
  root: v.optional(v.strictObject({ path: v.pipe(str, v.minLength(1, "expected a directory")), readonly: v.optional(v.boolean()) })),
  hostname: v.optional(str),
  domainname: v.optional(str),
  mounts: v.optional(v.array(Mount)),
  hooks: v.optional(
    v.strictObject({
      prestart: v.optional(v.array(Hook)),
      createRuntime: v.optional(v.array(Hook)),
      createContainer: v.optional(v.array(Hook)),
      startContainer: v.optional(v.array(Hook)),
      poststart: v.optional(v.array(Hook)),
      poststop: v.optional(v.array(Hook)),
    }),
  ),
  annotations: v.optional(v.record(str, str)),
  linux: v.optional(Linux),
  // Other platforms' sections: present in some generated configs, refused if they say anything.
  solaris: v.optional(v.unknown()),
  windows: v.optional(v.unknown()),
  vm: v.optional(v.unknown()),
  zos: v.optional(v.unknown()),
});

export type Spec = v.InferOutput<typeof SpecSchema>;
export type SpecHook = v.InferOutput<typeof Hook>;
export type SpecMount = v.InferOutput<typeof Mount>;
export type SpecResources = v.InferOutput<typeof Resources>;
export type HookName = keyof NonNullable<Spec["hooks"]>;

/** Validate parsed JSON; errors name the JSON path (`process.user.uid`) and the file. */
export function parseSpec(raw: unknown, file: string): Spec {
  const result = v.safeParse(SpecSchema, raw);
  if (!result.success) {
    const issue = result.issues.find((i) => i.expected === "never") ?? result.issues[0];
    const key = keyPath(issue.path);
    if (issue.expected === "never") throw new ConfigError(file, key, "unknown field (not in runtime-spec 1.x, or misspelt)");
    const got = issue.received === "undefined" ? "missing" : `got ${issue.received}`;
    throw new ConfigError(file, key, issue.kind === "schema" ? `expected ${issue.expected}, ${got}` : `${issue.message}, got ${JSON.stringify(issue.input)}`);
  }
  return result.output;
}

/** Read BUNDLE/config.json. */
export function loadSpec(bundle: string): { spec: Spec; file: string; raw: string } {
  const file = join(resolve(bundle), "config.json");
  let raw: string;
  try {
    raw = readFileSync(file, "utf8");
  } catch (e) {
    throw new ConfigError(file, null, `cannot read the bundle's config.json (${(e as NodeJS.ErrnoException).code})`);
  }
  let json: unknown;
  try {
    json = JSON.parse(raw);
  } catch (e) {
    throw new ConfigError(file, null, `not valid JSON: ${(e as Error).message}`);
  }
  return { spec: parseSpec(json, file), file, raw };
}
