import { z } from 'zod';
import { zodMessage, AppError } from '../errors.ts';

/** Parse route params with a message that says which one is wrong (ids never reach the file system unchecked). */
export function parseParams<T extends z.ZodType>(schema: T, params: unknown): z.infer<T> {
  const r = schema.safeParse(params);
  if (!r.success) throw new AppError('FLEET_ERR_BAD_PARAM', zodMessage(r.error, 'params'), 400);
  return r.data;
}

export function parseBody<T extends z.ZodType>(schema: T, body: unknown): z.infer<T> {
  if (body === undefined || body === null) throw new AppError('FLEET_ERR_VALIDATION', 'body: a JSON body is required', 400);
  const r = schema.safeParse(body);
  if (!r.success) throw new AppError('FLEET_ERR_VALIDATION', zodMessage(r.error), 400);
  return r.data;
}
