#!/usr/bin/env node
// Runs the TypeScript CLI directly through tsx: no build step for the Node host.
import { register } from 'tsx/esm/api';

register();
const { main } = await import('../src/node/cli.ts');
process.exitCode = await main(process.argv.slice(2));
