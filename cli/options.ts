// zod schemas for command-line arguments: a bad flag is refused with its name before any request.
import { z } from 'zod';
import { CliError } from './api-client.ts';
import { DeviceId, KeyId, ModelId, Sha256Hex } from '../shared/ids.ts';

export const GlobalOptions = z.object({
  server: z.string().url('--server must be a URL such as http://127.0.0.1:8080'),
  token: z.string().min(1).optional(),
  json: z.boolean().default(false),
});
export type GlobalOptions = z.infer<typeof GlobalOptions>;

const csv = (item: z.ZodString, what: string) => z.string().transform((s) => s.split(',').map((x) => x.trim()).filter(Boolean))
  .pipe(z.array(item).min(1, `${what}: give at least one`));
const num = z.string().trim().min(1).transform(Number).pipe(z.number({ error: 'expected a number' }).finite());

const gateOutput = z.string().regex(/^.+=(classifier|fidelity)$/, 'give <output>=classifier or <output>=fidelity')
  .transform((s) => { const i = s.lastIndexOf('='); return [s.slice(0, i), s.slice(i + 1) as 'classifier' | 'fidelity'] as const; });

export const PushOptions = z.object({
  modelId: ModelId,
  samples: z.string().min(1).optional(),
  reference: z.string().min(1).optional(),
  gateOutput: z.array(gateOutput).default([]).transform((pairs) => Object.fromEntries(pairs)),
  minSqnrDb: num.optional(),
  minCosine: num.pipe(z.number().min(-1).max(1, 'must be a cosine from -1 to 1')).optional(),
  quantize: z.boolean().default(true),
  allowFloatFallback: z.boolean().default(false),
  minAgreement: num.pipe(z.number().min(0).max(1, 'must be a fraction from 0 to 1')).optional(),
  maxDrop: num.pipe(z.number().min(0, 'must be >= 0 (percentage points)')).optional(),
  maxClassDrop: num.pipe(z.number().min(0, 'must be >= 0 (percentage points)')).optional(),
  hardware: csv(z.string().min(1).max(64), '--hardware').optional(),
  owner: z.string().min(1).max(128).optional(),
  expiresInDays: num.pipe(z.number().int().min(1).max(3650)).optional(),
}).refine((o) => !(o.samples && o.reference), { message: 'give --samples or --reference, not both' });

export const AssignOptions = z.object({
  devices: csv(DeviceId, '--devices').optional(),
  all: z.boolean().optional(),
  hardware: z.string().min(1).max(64).optional(),
}).refine((o) => (o.devices ? !o.all : o.all === true), { message: 'give either --devices a,b or --all' });

export const ShaArg = Sha256Hex;
export const KeyIdArg = KeyId;

/** Parse with a message naming the flag (camelCase keys are shown as --kebab-case). */
export function parseOptions<T extends z.ZodType>(schema: T, value: unknown, what = 'options'): z.infer<T> {
  const r = schema.safeParse(value);
  if (r.success) return r.data;
  const msg = r.error.issues.slice(0, 3).map((i) => {
    const key = i.path.map(String).join('.');
    return key ? `--${key.replace(/[A-Z]/g, (c) => `-${c.toLowerCase()}`)}: ${i.message}` : `${what}: ${i.message}`;
  }).join('; ');
  throw new CliError(msg, 'FLEETCTL_ERR_USAGE');
}

export function parseArg<T extends z.ZodType>(schema: T, value: unknown, name: string): z.infer<T> {
  const r = schema.safeParse(value);
  if (!r.success) throw new CliError(`${name}: ${r.error.issues[0].message}`, 'FLEETCTL_ERR_USAGE');
  return r.data;
}
