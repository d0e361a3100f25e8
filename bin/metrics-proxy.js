#!/usr/bin/env -S MALLOC_TRIM_THRESHOLD_=33554432 node --initial-old-space-size=64 --max-semi-space-size=4
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
// MALLOC_TRIM_THRESHOLD_=33554432: glibc keeps up to 32 MiB of freed memory instead of handing
// it back to the kernel at once. Request bodies pass through in 64 KiB buffers that V8 frees in
// batches; each batch went back to the kernel and was faulted in again, 18-180 page faults per
// 1 MiB upload and about a quarter of its CPU (docs/performance.md, "The allocator"). musl (the
// Alpine image) and other C libraries ignore it.
//
// V8 sizes the heap when the process starts, so both V8 flags are on the #! line (`env -S`: GNU
// coreutils, macOS, FreeBSD) and on every cluster worker's command line (cli/process-tuning.ts);
// in the container, the first on its #! line and the second in NODE_OPTIONS (Dockerfile), as
// the kernel hands a #! line's flags over as one argument and NODE_OPTIONS refuses the first.
// glibc reads its variable before main, so it is there too, and in each worker's environment.
// `node bin/metrics-proxy.js` runs without the three (its workers get them).
//
// --liftoff-only: undici compiles its HTTP parser (llhttp, WebAssembly) on the first upstream
// connection, and on Node 20 V8's optimising tier took a transient 35-40 MB for it (VmHWM
// 108 MB after one request, against 69 with Liftoff alone). Read when the module is compiled,
// so setting it here, before anything connects, is in time (docs/performance.md, "Footprint").
import { setFlagsFromString } from 'node:v8';

setFlagsFromString('--liftoff-only');
const { main } = await import('../dist/cli/bin-bundle.js');

process.exitCode = await main(process.argv, process.env);
