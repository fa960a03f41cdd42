// The server's TLS material, read and checked once at start: every problem is an error that names the
// file (missing, unreadable, not PEM, expired, key of another certificate), never a stack trace from
// deep inside the TLS stack at the first handshake. The API (HTTPS) and the broker (MQTTS) share it.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { createSecureContext } from 'node:tls';
import type { ServerConfig } from './config.ts';

export interface TlsMaterial {
  key: string;
  /** the server's certificate followed by the chain from tlsCaFile, sent to clients as is */
  cert: string;
  certFile: string;
  /** when the server's certificate expires */
  validTo: Date;
}

export class TlsConfigError extends Error {}

function readPem(what: string, file: string): string {
  let text: string;
  try {
    text = readFileSync(file, 'utf8');
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    const why = code === 'ENOENT' ? 'no such file' : code === 'EACCES' ? 'permission denied' : code === 'EISDIR' ? 'is a folder' : (err as Error).message;
    throw new TlsConfigError(`${what} ${file}: cannot read it (${why})`);
  }
  if (!text.includes('-----BEGIN ')) throw new TlsConfigError(`${what} ${file}: not a PEM file (no -----BEGIN line)`);
  return text;
}

function certsIn(what: string, file: string, text: string): X509Certificate[] {
  const blocks = text.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  if (blocks.length === 0) throw new TlsConfigError(`${what} ${file}: holds no PEM certificate (-----BEGIN CERTIFICATE-----)`);
  return blocks.map((b, i) => {
    try { return new X509Certificate(b); } catch (err) { throw new TlsConfigError(`${what} ${file}: certificate ${i + 1} does not parse (${(err as Error).message})`); }
  });
}

/** null when TLS is not configured (plain HTTP and MQTT) */
export function loadTlsMaterial(config: Pick<ServerConfig, 'tlsCertFile' | 'tlsKeyFile' | 'tlsCaFile'>, now = new Date()): TlsMaterial | null {
  if (!config.tlsCertFile || !config.tlsKeyFile) return null;
  const certText = readPem('tlsCertFile', config.tlsCertFile);
  const [leaf] = certsIn('tlsCertFile', config.tlsCertFile, certText);
  const keyText = readPem('tlsKeyFile', config.tlsKeyFile);
  let key;
  try {
    key = createPrivateKey(keyText);
  } catch (err) {
    throw new TlsConfigError(`tlsKeyFile ${config.tlsKeyFile}: not a usable PEM private key (${(err as Error).message}; encrypted keys are not supported)`);
  }
  if (!leaf.checkPrivateKey(key)) throw new TlsConfigError(`tlsKeyFile ${config.tlsKeyFile} is not the key of the certificate in tlsCertFile ${config.tlsCertFile}`);
  const validTo = new Date(leaf.validTo);
  if (validTo.getTime() <= now.getTime()) throw new TlsConfigError(`tlsCertFile ${config.tlsCertFile}: the certificate expired on ${validTo.toISOString()}`);
  if (new Date(leaf.validFrom).getTime() > now.getTime()) throw new TlsConfigError(`tlsCertFile ${config.tlsCertFile}: the certificate is not valid before ${new Date(leaf.validFrom).toISOString()}`);
  let cert = certText;
  if (config.tlsCaFile) {
    const chain = readPem('tlsCaFile', config.tlsCaFile);
    certsIn('tlsCaFile', config.tlsCaFile, chain);
    cert = `${certText.trimEnd()}\n${chain}`;
  }
  try {
    createSecureContext({ key: keyText, cert });
  } catch (err) {
    throw new TlsConfigError(`tlsCertFile ${config.tlsCertFile} / tlsKeyFile ${config.tlsKeyFile}: the TLS stack refuses them (${(err as Error).message})`);
  }
  return { key: keyText, cert, certFile: config.tlsCertFile, validTo };
}
