// Who may call what. Every route declares its access level in its config (`config: { access }`);
// without one, GET/HEAD need a viewer token and anything else an operator token. One onRequest hook
// authenticates the bearer token (API token or device secret), checks the role, applies the rate
// limits, and sets req.principal, which the audit log and campaign routes read.
import type { FastifyInstance, FastifyRequest } from 'fastify';
import { AppError } from '../errors.ts';
import { roleAtLeast, type Role, type TokenPrincipal } from './api-tokens.ts';
import type { DevicePrincipal } from './device-credentials.ts';
import { RateLimiter } from './rate-limit.ts';
import { SECRET_PREFIX } from './secrets.ts';
import { DEVICE_TOKEN_PREFIX } from '../../shared/device-token.ts';

/** public: no token (health, enrollment, which carries its own token); artifact: a device token (or legacy device secret) or a viewer token */
export type Access = 'public' | Role | 'artifact';
export type Principal = TokenPrincipal | DevicePrincipal;

declare module 'fastify' {
  interface FastifyRequest { principal: Principal | null }
  interface FastifyContextConfig { access?: Access }
}

export function requiredAccess(req: FastifyRequest): Access {
  const declared = req.routeOptions.config?.access;
  if (declared) return declared;
  return req.method === 'GET' || req.method === 'HEAD' ? 'viewer' : 'operator';
}

function bearer(req: FastifyRequest): string | null | 'malformed' {
  const h = req.headers.authorization;
  if (h === undefined) return null;
  const m = /^Bearer ([\x21-\x7e]{1,512})$/.exec(h);
  return m ? m[1] : 'malformed';
}

export async function apiAuth(app: FastifyInstance): Promise<void> {
  const { config, apiTokens, credentials } = app.fleet;
  const limiter = new RateLimiter(config.apiRateLimit);
  const failures = new RateLimiter(config.authFailureRateLimit);

  const limit = (rl: RateLimiter, key: string, what: string) => {
    const wait = rl.take(key);
    if (wait > 0) throw Object.assign(new AppError('FLEET_ERR_RATE_LIMITED', `${what}: try again in ${Math.ceil(wait / 1000)} s`, 429), { retryAfterMs: wait });
  };
  const refuse = (req: FastifyRequest, message: string): never => {
    limit(failures, `ip:${req.ip}`, 'too many failed authentications from this address');
    throw new AppError('FLEET_ERR_UNAUTHENTICATED', message, 401);
  };

  app.decorateRequest('principal', null);
  app.addHook('onRequest', async (req, reply) => {
    const access = requiredAccess(req);
    const token = bearer(req);
    if (access === 'public' || (token === null && access === 'artifact' && config.allowUnenrolledDevices)) {
      limit(limiter, `ip:${req.ip}`, 'too many requests from this address');
      return;
    }
    if (token === null) {
      reply.header('www-authenticate', 'Bearer');
      return refuse(req, 'this request needs a token: send "authorization: Bearer <token>"');
    }
    if (token === 'malformed') {
      reply.header('www-authenticate', 'Bearer error="invalid_request"');
      return refuse(req, 'the authorization header must be "Bearer <token>"');
    }
    let principal: Principal | null;
    if (token.startsWith(DEVICE_TOKEN_PREFIX)) {
      const r = credentials.deviceForToken(token);
      if ('reason' in r) {
        reply.header('www-authenticate', 'Bearer error="invalid_token"');
        return refuse(req, `device token refused (${r.reason}): ${r.message}`);
      }
      principal = r.principal;
    } else {
      principal = token.startsWith(SECRET_PREFIX.deviceSecret) ? credentials.deviceFor(token) : apiTokens.verify(token);
    }
    if (!principal) {
      reply.header('www-authenticate', 'Bearer error="invalid_token"');
      return refuse(req, 'the token is not valid (unknown, revoked or expired)');
    }
    limit(limiter, principal.kind === 'device' ? `dev:${principal.deviceId}` : `tok:${principal.tokenId}`, 'rate limit reached for this token');
    if (principal.kind === 'device') {
      if (access !== 'artifact') throw new AppError('FLEET_ERR_FORBIDDEN', 'a device credential may only download its assigned artifacts', 403);
    } else {
      const need: Role = access === 'artifact' ? 'viewer' : access;
      if (!roleAtLeast(principal.role, need)) throw new AppError('FLEET_ERR_FORBIDDEN', `this needs the ${need} role; token ${principal.name} has ${principal.role}`, 403);
    }
    req.principal = principal;
  });
}
