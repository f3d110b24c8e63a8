// Packages the bundle (bundle.mjs) leaves in node_modules: native addons, and packages that load
// files next to themselves at run time. A release ships only these and what they depend on.
export const EXTERNAL_PACKAGES = [
  'better-sqlite3',
  '@serialport/bindings-cpp',
  '@mongodb-js/zstd',
  '@bokuweb/zstd-wasm',
  'epoll',
  'onoff',
  'node-wifi',
];
