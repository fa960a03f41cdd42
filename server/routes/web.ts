// The fleet page: two static files, public (they hold no data); every figure on the page comes from the
// admin API with the operator's token. A strict CSP keeps the page to its own script.
import type { FastifyInstance } from 'fastify';
import { readFileSync } from 'node:fs';

const CSP = "default-src 'none'; script-src 'self'; style-src 'unsafe-inline'; connect-src 'self'; form-action 'none'; frame-ancestors 'none'";

export async function webRoutes(app: FastifyInstance): Promise<void> {
  const html = readFileSync(new URL('../web/index.html', import.meta.url));
  const js = readFileSync(new URL('../web/app.js', import.meta.url));
  const pub = { config: { access: 'public' as const } };
  app.get('/', pub, async (_req, reply) => reply.type('text/html; charset=utf-8').header('content-security-policy', CSP).send(html));
  app.get('/app.js', pub, async (_req, reply) => reply.type('text/javascript; charset=utf-8').header('content-security-policy', CSP).send(js));
}
