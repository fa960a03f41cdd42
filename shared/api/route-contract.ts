// One REST route described by its schemas: the server validates with them, clients (CLI, page) read
// the same types, and an OpenAPI document can be generated from a list of these.
import type { ZodType } from 'zod';

export interface RouteContract {
  method: 'GET' | 'POST' | 'PUT' | 'DELETE';
  path: string;
  summary: string;
  tags?: string[];
  params?: ZodType;
  query?: ZodType;
  body?: ZodType;
  responses: Record<number, ZodType>;
}
