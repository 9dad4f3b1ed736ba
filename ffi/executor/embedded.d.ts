// The two programs build.ts compiles, embedded into the executable by `bun build --compile`.
declare module "*.so" {
  const path: string;
  export default path;
}
declare module "*.bin" {
  const path: string;
  export default path;
}
