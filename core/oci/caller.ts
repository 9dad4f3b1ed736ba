// Who runs an OCI command: what planning (plan.ts) and the cgroup's placement (cgroup.ts) need to
// know of the caller.
export interface OciCaller {
  uid: number;
  gid: number;
  /** Root of the initial user namespace (a uid 0 inside someone's user namespace is not). */
  hostRoot: boolean;
}
