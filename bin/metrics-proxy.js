#!/usr/bin/env -S node --initial-old-space-size=64 --max-semi-space-size=4
// Thin shim over the compiled CLI: all logic lives in dist/cli/main.js, run here from its bundle
// (dist/cli/bin-bundle.js: our modules and the packages they import in one file, built by
// `npm run bundle`). A bundle starts with about 12 MB less RSS: Node's loader never resolves,
// reads and lexes some 150 separate files, so V8 never optimises the loader's own hot loops at
// start-up (docs/performance.md, "Footprint").
//
// --initial-old-space-size=64: V8 starts the old generation's allocation limit at 64 MB
// instead of a few MB above what the loaded packages keep alive. Without it, 1 MiB uploads
// run a full mark-compact every 25-50 ms (docs/performance.md, "The misses, measured").
//
// --max-semi-space-size=4: V8's young generation stops growing at 2 x 4 MB instead of 2 x 16.
// Under load it grew to its largest and stayed there, touched: 24 MB of the RSS with 5 000
// held connections (docs/performance.md, "Footprint").
//
// V8 sizes the heap when the process starts, so both are on the #! line (`env -S`: GNU
// coreutils, macOS, FreeBSD) and on every cluster worker's command line (cli/cluster.ts);
// in the container, the first on its #! line and the second in NODE_OPTIONS (Dockerfile), as
// the kernel hands a #! line's flags over as one argument and NODE_OPTIONS refuses the first.
// `node bin/metrics-proxy.js` runs without them.
//
// --liftoff-only: undici compiles its HTTP parser (llhttp, WebAssembly) on the first upstream
// connection, and on Node 20 V8's optimising tier took a transient 35-40 MB for it (VmHWM
// 108 MB after one request, against 69 with Liftoff alone). Read when the module is compiled,
// so setting it here, before anything connects, is in time (docs/performance.md, "Footprint").
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--liftoff-only');
const { main } = await import('../dist/cli/bin-bundle.js');

process.exitCode = await main(process.argv, process.env);
