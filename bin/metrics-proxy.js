#!/usr/bin/env -S node --initial-old-space-size=64
// Thin shim over the compiled CLI: all logic lives in dist/cli/main.js, run here from its bundle
// (dist/cli/bin-bundle.js: our modules and the packages they import in one file, built by
// `npm run bundle`). A bundle starts with about 12 MB less RSS: Node's loader never resolves,
// reads and lexes some 150 separate files, so V8 never optimises the loader's own hot loops at
// start-up (docs/performance.md, "Footprint").
//
// --initial-old-space-size=64: V8 starts the old generation's allocation limit at 64 MB
// instead of a few MB above what the loaded packages keep alive. Without it, 1 MiB uploads
// run a full mark-compact every 25-50 ms (docs/performance.md, "The misses, measured").
// V8 sizes the heap when the process starts: NODE_OPTIONS refuses the flag and
// v8.setFlagsFromString comes too late, so it is on the #! line (`env -S`: GNU coreutils,
// macOS, FreeBSD), on the container's #! line (Dockerfile) and on every cluster worker's
// command line (cli/cluster.ts). `node bin/metrics-proxy.js` runs without it.
//
// --liftoff-only: undici compiles its HTTP parser (llhttp, WebAssembly) on the first upstream
// connection, and on Node 20 V8's optimising tier took a transient 35-40 MB for it (VmHWM
// 108 MB after one request, against 69 with Liftoff alone). Read when the module is compiled,
// so setting it here, before anything connects, is in time (docs/performance.md, "Footprint").
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--liftoff-only');
const { main } = await import('../dist/cli/bin-bundle.js');

process.exitCode = await main(process.argv, process.env);
