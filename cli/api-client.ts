// Plain fetch against the fleet server's admin API. Errors carry the server's code and message.
// call() takes a REST contract entry (shared/api/): its path, method and response type come from there.
import { pathOf, type RouteContract, type SuccessOf } from '../shared/api/contract.ts';

export class CliError extends Error {
  constructor(message: string, readonly code = 'FLEETCTL_ERR', readonly details?: unknown) {
    super(message);
    this.name = 'CliError';
  }
}

export interface ApiOptions { serverUrl: string; token?: string }

export class ApiClient {
  constructor(private readonly opts: ApiOptions) {}

  get base(): string { return this.opts.serverUrl.replace(/\/+$/, ''); }

  async call<R extends RouteContract>(r: R, input: { params?: Record<string, string | number>; query?: Record<string, string | number | undefined>; body?: unknown } = {}): Promise<SuccessOf<R>> {
    const query = Object.entries(input.query ?? {}).filter(([, v]) => v !== undefined).map(([k, v]) => [k, String(v)]);
    const { body } = await this.json(r.method, `${pathOf(r, input.params)}${query.length ? `?${new URLSearchParams(query)}` : ''}`, input.body);
    return body as SuccessOf<R>;
  }

  async json<T = unknown>(method: RouteContract['method'], path: string, body?: unknown): Promise<{ status: number; body: T }> {
    const headers: Record<string, string> = this.authHeaders();
    if (body !== undefined) headers['content-type'] = 'application/json';
    const res = await this.fetch(path, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    return { status: res.status, body: (await this.parse(res)) as T };
  }

  async postBytes<T = unknown>(path: string, bytes: Uint8Array): Promise<T> {
    const res = await this.fetch(path, { method: 'POST', headers: { ...this.authHeaders(), 'content-type': 'application/octet-stream' }, body: Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength) as unknown as BodyInit });
    return (await this.parse(res)) as T;
  }

  async getBytes(path: string): Promise<Uint8Array> {
    const res = await this.fetch(path, { method: 'GET', headers: this.authHeaders() });
    if (!res.ok) await this.parse(res);
    return new Uint8Array(await res.arrayBuffer());
  }

  private authHeaders(): Record<string, string> {
    return this.opts.token ? { authorization: `Bearer ${this.opts.token}` } : {};
  }

  private async fetch(path: string, init: RequestInit): Promise<Response> {
    try {
      return await fetch(`${this.base}${path}`, init);
    } catch (err) {
      const cause = (err as { cause?: { code?: string } }).cause?.code;
      throw new CliError(`cannot reach the fleet server at ${this.base}${cause ? ` (${cause})` : ''}: set --server or FLEET_SERVER_URL`, 'FLEETCTL_ERR_UNREACHABLE');
    }
  }

  private async parse(res: Response): Promise<unknown> {
    const text = await res.text();
    let body: unknown = text;
    try { body = text ? JSON.parse(text) : null; } catch { /* a non-JSON body is reported as text */ }
    if (!res.ok) {
      const b = body as { error?: string; message?: string; details?: unknown } | null;
      throw new CliError(`${b?.message ?? (text.slice(0, 500) || res.statusText)} (HTTP ${res.status})`, b?.error ?? `HTTP_${res.status}`, b?.details);
    }
    return body;
  }
}
