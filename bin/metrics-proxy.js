#!/usr/bin/env node
// Thin shim over the compiled CLI: all logic lives in dist/cli/main.js.
import { main } from '../dist/cli/main.js';

process.exitCode = await main(process.argv, process.env);
