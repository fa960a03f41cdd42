// A development certificate authority: an ECDSA P-256 CA and server certificates it signs, made with
// node:crypto alone (keys, SHA-256, ECDSA) and a small DER writer for the X.509 structures (RFC 5280),
// so `fleetctl dev-ca` needs neither openssl nor an npm package on a fresh machine. Node parses and
// checks what it writes (X509Certificate, a real TLS handshake in test/security/tls.test.ts).
// For development and tests: a production fleet uses certificates from its own PKI (docs/security.md).
import { createHash, createPrivateKey, createPublicKey, generateKeyPairSync, randomBytes, sign, X509Certificate, type KeyObject } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { join } from 'node:path';

// ---- DER (X.690) --------------------------------------------------------------------------------

function tlv(tag: number, content: Buffer): Buffer {
  const n = content.length;
  let len: Buffer;
  if (n < 0x80) len = Buffer.from([n]);
  else {
    const bytes: number[] = [];
    for (let v = n; v > 0; v = Math.floor(v / 256)) bytes.unshift(v & 0xff);
    len = Buffer.from([0x80 | bytes.length, ...bytes]);
  }
  return Buffer.concat([Buffer.from([tag]), len, content]);
}
const seq = (...items: Buffer[]) => tlv(0x30, Buffer.concat(items));
const set = (...items: Buffer[]) => tlv(0x31, Buffer.concat(items));
const explicit = (n: number, inner: Buffer) => tlv(0xa0 + n, inner);
const octets = (b: Buffer) => tlv(0x04, b);
const bool = (v: boolean) => tlv(0x01, Buffer.from([v ? 0xff : 0x00]));
const utf8 = (s: string) => tlv(0x0c, Buffer.from(s, 'utf8'));
/** a non-negative INTEGER from big-endian bytes (minimal, with a 0 byte when the top bit is set) */
function uint(b: Buffer): Buffer {
  let i = 0;
  while (i < b.length - 1 && b[i] === 0 && b[i + 1] < 0x80) i++;
  const v = b.subarray(i);
  return tlv(0x02, v[0] >= 0x80 ? Buffer.concat([Buffer.from([0]), v]) : v);
}
function bits(b: Buffer, unused = 0): Buffer {
  return tlv(0x03, Buffer.concat([Buffer.from([unused]), b]));
}
function oid(dotted: string): Buffer {
  const [a, b, ...rest] = dotted.split('.').map(Number);
  const out = [40 * a + b];
  for (const n of rest) {
    const chunk: number[] = [n & 0x7f];
    for (let v = Math.floor(n / 128); v > 0; v = Math.floor(v / 128)) chunk.unshift(0x80 | (v & 0x7f));
    out.push(...chunk);
  }
  return tlv(0x06, Buffer.from(out));
}
/** UTCTime through 2049, GeneralizedTime after (RFC 5280 4.1.2.5) */
function time(d: Date): Buffer {
  const s = d.toISOString().replace(/[-:T]/g, '').slice(0, 14) + 'Z'; // YYYYMMDDHHMMSSZ
  return d.getUTCFullYear() < 2050 ? tlv(0x17, Buffer.from(s.slice(2))) : tlv(0x18, Buffer.from(s));
}

const OID = {
  ecdsaWithSha256: '1.2.840.10045.4.3.2', commonName: '2.5.4.3', organization: '2.5.4.10',
  subjectKeyId: '2.5.29.14', keyUsage: '2.5.29.15', subjectAltName: '2.5.29.17', basicConstraints: '2.5.29.19',
  extKeyUsage: '2.5.29.37', authorityKeyId: '2.5.29.35', serverAuth: '1.3.6.1.5.5.7.3.1', clientAuth: '1.3.6.1.5.5.7.3.2',
};

const name = (cn: string) => seq(set(seq(oid(OID.organization), utf8('edge-fleet development'))), set(seq(oid(OID.commonName), utf8(cn))));
const extension = (id: string, critical: boolean, value: Buffer) => seq(oid(id), ...(critical ? [bool(true)] : []), octets(value));

/** RFC 5280 4.2.1.2 method 1: SHA-1 of the subjectPublicKey bits */
function keyId(pub: KeyObject): Buffer {
  const spki = pub.export({ type: 'spki', format: 'der' });
  return createHash('sha1').update(spki.subarray(spki.length - 65)).digest(); // P-256 uncompressed point
}

interface CertSpec {
  subject: string;
  subjectKey: KeyObject;
  issuer: string;
  issuerKey: KeyObject;
  days: number;
  ca: boolean;
  dns?: string[];
  ips?: string[];
  now: Date;
}

function certificate(s: CertSpec): string {
  const serial = randomBytes(16);
  serial[0] &= 0x7f;
  serial[0] |= 0x01; // positive, 16 bytes
  const notBefore = new Date(s.now.getTime() - 3600_000); // an hour of clock skew
  const notAfter = new Date(s.now.getTime() + s.days * 86_400_000);
  const subjectPub = createPublicKey(s.subjectKey);
  const issuerPub = createPublicKey(s.issuerKey);
  const exts = [
    extension(OID.basicConstraints, true, s.ca ? seq(bool(true), uint(Buffer.from([0]))) : seq()),
    // keyUsage bits, numbered from the top: digitalSignature(0), keyCertSign(5), cRLSign(6)
    extension(OID.keyUsage, true, s.ca ? bits(Buffer.from([0x86]), 1) : bits(Buffer.from([0x80]), 7)),
    extension(OID.subjectKeyId, false, octets(keyId(subjectPub))),
    ...(s.ca ? [] : [
      extension(OID.authorityKeyId, false, seq(tlv(0x80, keyId(issuerPub)))),
      extension(OID.extKeyUsage, false, seq(oid(OID.serverAuth), oid(OID.clientAuth))),
      extension(OID.subjectAltName, false, seq(
        ...(s.dns ?? []).map((d) => tlv(0x82, Buffer.from(d, 'ascii'))),
        ...(s.ips ?? []).map((ip) => tlv(0x87, ipBytes(ip))),
      )),
    ]),
  ];
  const sigAlg = seq(oid(OID.ecdsaWithSha256));
  const tbs = seq(
    explicit(0, uint(Buffer.from([2]))), // v3
    uint(serial), sigAlg, name(s.issuer), seq(time(notBefore), time(notAfter)), name(s.subject),
    subjectPub.export({ type: 'spki', format: 'der' }),
    explicit(3, seq(...exts)),
  );
  const sig = sign('sha256', tbs, { key: s.issuerKey, dsaEncoding: 'der' });
  const der = seq(tbs, sigAlg, bits(sig));
  return `-----BEGIN CERTIFICATE-----\n${der.toString('base64').replace(/.{1,64}/g, '$&\n')}-----END CERTIFICATE-----\n`;
}

function ipBytes(ip: string): Buffer {
  if (isIP(ip) === 4) return Buffer.from(ip.split('.').map(Number));
  if (isIP(ip) !== 6) throw new Error(`not an IP address: ${ip}`);
  // expand :: and an embedded IPv4 tail, then 8 groups of 16 bits
  let text = ip;
  const v4 = text.match(/(\d+\.\d+\.\d+\.\d+)$/);
  if (v4) {
    const b = v4[1].split('.').map(Number);
    text = text.slice(0, -v4[1].length) + `${((b[0] << 8) | b[1]).toString(16)}:${((b[2] << 8) | b[3]).toString(16)}`;
  }
  const [head, tail] = text.split('::');
  const h = head ? head.split(':') : [];
  const t = tail !== undefined && tail !== '' ? tail.split(':') : [];
  const groups = tail !== undefined ? [...h, ...new Array(8 - h.length - t.length).fill('0'), ...t] : h;
  const out = Buffer.alloc(16);
  groups.forEach((g, i) => out.writeUInt16BE(parseInt(g, 16), i * 2));
  return out;
}

// ---- the CA and what it issues -------------------------------------------------------------------

export interface DevCa { keyPem: string; certPem: string }
export interface IssuedCert { keyPem: string; certPem: string }

const newKey = () => generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
const pkcs8 = (k: KeyObject) => k.export({ type: 'pkcs8', format: 'pem' }) as string;

export function makeDevCa(opts: { commonName?: string; days?: number; now?: Date } = {}): DevCa {
  const key = newKey();
  const cn = opts.commonName ?? 'edge-fleet development CA';
  return { keyPem: pkcs8(key), certPem: certificate({ subject: cn, subjectKey: key, issuer: cn, issuerKey: key, days: opts.days ?? 3650, ca: true, now: opts.now ?? new Date() }) };
}

export function issueCert(ca: DevCa, opts: { commonName: string; dns?: string[]; ips?: string[]; days?: number; now?: Date }): IssuedCert {
  if (!opts.dns?.length && !opts.ips?.length) throw new Error('a server certificate needs at least one --dns name or --ip address (clients check the subject alternative names)');
  for (const ip of opts.ips ?? []) if (!isIP(ip)) throw new Error(`--ip ${ip}: not an IPv4 or IPv6 address`);
  for (const d of opts.dns ?? []) if (!/^(\*\.)?[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?(\.[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*$/.test(d)) throw new Error(`--dns ${d}: not a DNS name`);
  const caKey = createPrivateKey(ca.keyPem);
  const caCert = new X509Certificate(ca.certPem);
  if (!caCert.ca) throw new Error('the given CA certificate is not a CA (basicConstraints cA is false)');
  if (!caCert.checkPrivateKey(caKey)) throw new Error('the CA key does not belong to the CA certificate');
  const key = newKey();
  const issuer = caCert.subject.split('\n').find((l) => l.startsWith('CN='))?.slice(3) ?? 'edge-fleet development CA';
  return { keyPem: pkcs8(key), certPem: certificate({ subject: opts.commonName, subjectKey: key, issuer, issuerKey: caKey, days: opts.days ?? 825, ca: false, dns: opts.dns, ips: opts.ips, now: opts.now ?? new Date() }) };
}

// ---- files (fleetctl dev-ca and the test harness) ------------------------------------------------

export const CA_FILES = { key: 'ca.key', cert: 'ca.pem' } as const;

/** key files are written 0600, also when they existed before */
function writeKey(path: string, pem: string): void {
  writeFileSync(path, pem, { mode: 0o600 });
  chmodSync(path, 0o600);
}

export function writeDevCa(dir: string, opts: { force?: boolean; commonName?: string; days?: number } = {}): { keyFile: string; certFile: string } {
  mkdirSync(dir, { recursive: true });
  const keyFile = join(dir, CA_FILES.key);
  const certFile = join(dir, CA_FILES.cert);
  if (!opts.force && (existsSync(keyFile) || existsSync(certFile))) {
    throw new Error(`${dir} already holds a CA (${CA_FILES.key} / ${CA_FILES.cert}); devices that pinned it would refuse a new one. Use --force to replace it`);
  }
  const ca = makeDevCa(opts);
  writeKey(keyFile, ca.keyPem);
  writeFileSync(certFile, ca.certPem);
  return { keyFile, certFile };
}

export function readDevCa(dir: string): DevCa {
  const read = (f: string) => {
    const p = join(dir, f);
    try { return readFileSync(p, 'utf8'); } catch (err) { throw new Error(`cannot read ${p}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message} (make one with: fleetctl dev-ca init --out ${dir})`); }
  };
  return { keyPem: read(CA_FILES.key), certPem: read(CA_FILES.cert) };
}

export function writeIssued(caDir: string, outDir: string, opts: { name: string; dns?: string[]; ips?: string[]; days?: number }): { keyFile: string; certFile: string; caFile: string } {
  if (!/^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$/.test(opts.name)) throw new Error(`--name ${opts.name}: use letters, digits, '.', '_' and '-' (it names the files)`);
  const cert = issueCert(readDevCa(caDir), { commonName: opts.name, dns: opts.dns, ips: opts.ips, days: opts.days });
  mkdirSync(outDir, { recursive: true });
  const keyFile = join(outDir, `${opts.name}.key`);
  const certFile = join(outDir, `${opts.name}.pem`);
  writeKey(keyFile, cert.keyPem);
  writeFileSync(certFile, cert.certPem);
  return { keyFile, certFile, caFile: join(caDir, CA_FILES.cert) };
}
