// What every command needs: parsed global options, the API client and the output sink.
import type { Command } from 'commander';
import { ApiClient } from './api-client.ts';
import { GlobalOptions, parseOptions } from './options.ts';
import type { Io } from './output.ts';

export interface Defaults { serverUrl: string; token?: string }
export interface Ctx { io: Io; api: ApiClient; globals: GlobalOptions }

export function contextOf(cmd: Command, defaults: Defaults, sink: Omit<Io, 'json'>): Ctx {
  const all = cmd.optsWithGlobals() as { server?: string; token?: string; json?: boolean };
  const globals = parseOptions(GlobalOptions, { server: all.server ?? defaults.serverUrl, token: all.token ?? defaults.token, json: all.json ?? false });
  return { globals, io: { json: globals.json, ...sink }, api: new ApiClient({ serverUrl: globals.server, token: globals.token }) };
}
