// Every sync point a tape may stop at, in one list. A tape stops at one (syncWithHost in
// core/tape/calls.ts: a SYNC record with the id, then it waits on the sync pipe) when nsrun has work
// to do from outside while the process waits; the launcher (launch.ts) calls the handler the caller
// gave for that id and answers. One object, so no two sync points can share an id by accident
// (test/launcher.test.ts checks the values are distinct).
export const SYNC = {
  /** nsrun writes the box's uid_map and gid_map (newuidmap/newgidmap, or as root): core/stages/userns.ts. */
  ID_MAPS: 1,
  /** nsrun starts pasta or slirp4netns on the box's network namespace: core/stages/network.ts. */
  NETWORK: 2,
  /** OCI: the prestart and createRuntime hooks run on the host (core/oci/hooks.ts). */
  CREATE_HOOKS: 0x4f01,
  /** OCI create: the container is set up and waits for `start`; create stops reading here. */
  READY: 0x4f02,
  /** An id-mapped bind's user namespace gets its maps (core/oci/idmap.ts). */
  IDMAP_USERNS: 0x4f10,
} as const;

export type SyncName = keyof typeof SYNC;
export type SyncId = (typeof SYNC)[SyncName];

export function syncName(id: number): string {
  return (Object.keys(SYNC) as SyncName[]).find((k) => SYNC[k] === id) ?? `0x${id.toString(16)}`;
}
