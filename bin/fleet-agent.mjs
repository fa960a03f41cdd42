#!/usr/bin/env node
// npm bin wrapper: runs the TypeScript agent through tsx's loader.
import { register } from 'tsx/esm/api';
register();
await import('../device-agent/main.ts');
