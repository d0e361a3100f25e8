#!/usr/bin/env node
// Thin shim over the compiled CLI: all logic lives in dist/cli.js.
import { main } from '../dist/cli.js';

process.exitCode = await main(process.argv, process.env);
