// A JSON file an operator hands to fleetctl (a release file, a policy, samples): read and checked against
// its schema before anything is sent, with the file and the field that is wrong in the message.
import { existsSync, readFileSync } from 'node:fs';
import type { z } from 'zod';
import { CliError } from './api-client.ts';

/** The file's JSON; a missing file or one that does not parse is a usage error naming `what` and the path. */
export function readJson(what: string, path: string): unknown {
  if (!existsSync(path)) throw new CliError(`no ${what} file ${path}`, 'FLEETCTL_ERR_USAGE');
  try { return JSON.parse(readFileSync(path, 'utf8')); } catch (err) { throw new CliError(`${what} ${path} is not JSON: ${(err as Error).message}`, 'FLEETCTL_ERR_USAGE'); }
}

/** `value` as `schema` says, or a usage error `<what>: <field path>: <message>` for its first issue. */
export function parseWith<T>(schema: z.ZodType<T>, value: unknown, what: string): T {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const i = r.error.issues[0];
  throw new CliError(`${what}: ${i.path.map(String).join('.') || '(root)'}: ${i.message}`, 'FLEETCTL_ERR_USAGE');
}
