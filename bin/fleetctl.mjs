#!/usr/bin/env node
// npm bin wrapper: runs the TypeScript operator CLI through tsx's loader.
import { register } from 'tsx/esm/api';
register();
await import('../cli/fleetctl.ts');
