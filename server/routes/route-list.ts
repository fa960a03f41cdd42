// Every route the server registered (method and URL), as fastify announced them, so a test can hold
// them against the REST contract and the OpenAPI document.
import type { FastifyInstance } from 'fastify';

export interface RegisteredRoute { method: string; url: string }

const lists = new WeakMap<FastifyInstance, RegisteredRoute[]>();

/** Call right after creating the instance, before any route is added. */
export function recordRoutes(app: FastifyInstance): void {
  const list: RegisteredRoute[] = [];
  lists.set(app, list);
  app.addHook('onRoute', (r) => {
    for (const method of [r.method].flat()) list.push({ method, url: r.url });
  });
}

export function registeredRoutes(app: FastifyInstance): RegisteredRoute[] {
  // HEAD answers as GET does without a body: fastify adds it to GET routes, artifacts ask for it
  return (lists.get(app) ?? []).filter((r) => r.method !== 'HEAD');
}
