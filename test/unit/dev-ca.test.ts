// The development CA's X.509 output, read back by Node's own parser: CA and leaf flags, the subject
// alternative names exactly as given (IPv6 forms expanded right), signatures that verify against the
// issuing CA only, ECDSA P-256 keys, validity; and the refusals of `issue`.
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { describe, expect, it } from 'vitest';
import { issueCert, makeDevCa } from '../../cli/dev-ca.ts';

const now = new Date('2026-06-01T12:00:00Z');
const ca = makeDevCa({ now });
const other = makeDevCa({ now });

describe('dev CA certificates', () => {
  it('the CA: self-signed, cA true, ECDSA P-256, valid from an hour before now for 3650 days', () => {
    const x = new X509Certificate(ca.certPem);
    expect(x.ca).toBe(true);
    expect(x.subject).toBe('O=edge-fleet development\nCN=edge-fleet development CA');
    expect(x.issuer).toBe(x.subject);
    expect(x.verify(x.publicKey)).toBe(true);
    expect(x.publicKey.asymmetricKeyDetails).toEqual({ namedCurve: 'prime256v1' });
    expect(new Date(x.validFrom).toISOString()).toBe('2026-06-01T11:00:00.000Z');
    expect(new Date(x.validTo).toISOString()).toBe(new Date(now.getTime() + 3650 * 86_400_000).toISOString());
    expect(x.checkPrivateKey(createPrivateKey(ca.keyPem))).toBe(true);
  });

  it('a server certificate: the names and addresses given, signed by its CA and not by another, cA false', () => {
    const c = issueCert(ca, { commonName: 'fleet', dns: ['localhost', 'fleet.example'], ips: ['127.0.0.1', '::1', 'fe80::1', '::ffff:10.0.0.1', '2001:db8::8:800:200c:417a'], now });
    const x = new X509Certificate(c.certPem);
    expect(x.subjectAltName).toBe('DNS:localhost, DNS:fleet.example, IP Address:127.0.0.1, IP Address:0:0:0:0:0:0:0:1, IP Address:FE80:0:0:0:0:0:0:1, IP Address:0:0:0:0:0:FFFF:A00:1, IP Address:2001:DB8:0:0:8:800:200C:417A');
    expect(x.ca).toBe(false);
    expect(x.subject).toBe('O=edge-fleet development\nCN=fleet');
    expect(x.checkIssued(new X509Certificate(ca.certPem))).toBe(true);
    expect(x.verify(new X509Certificate(ca.certPem).publicKey)).toBe(true);
    expect(x.verify(new X509Certificate(other.certPem).publicKey)).toBe(false);
    expect(x.checkHost('fleet.example')).toBe('fleet.example');
    expect(x.checkIP('127.0.0.1')).toBe('127.0.0.1');
    expect(x.checkHost('other.example')).toBeUndefined();
    expect(new Date(x.validTo).toISOString()).toBe(new Date(now.getTime() + 825 * 86_400_000).toISOString());
    expect(x.keyUsage).toEqual(['1.3.6.1.5.5.7.3.1', '1.3.6.1.5.5.7.3.2']); // serverAuth, clientAuth
  });

  it.each([
    ['no name or address', {}, 'needs at least one --dns name or --ip address'],
    ['a bad IP address', { ips: ['300.1.1.1'] }, '--ip 300.1.1.1: not an IPv4 or IPv6 address'],
    ['a bad DNS name', { dns: ['bad_name!'] }, '--dns bad_name!: not a DNS name'],
  ])('issue refuses %s', (_n, opts, message) => {
    expect(() => issueCert(ca, { commonName: 'x', ...opts })).toThrow(message);
  });

  it('issue refuses a CA key that is not the CA certificate\'s, and a leaf certificate as CA', () => {
    expect(() => issueCert({ certPem: ca.certPem, keyPem: other.keyPem }, { commonName: 'x', dns: ['x'] })).toThrow('the CA key does not belong to the CA certificate');
    const leaf = issueCert(ca, { commonName: 'leaf', dns: ['leaf'] });
    expect(() => issueCert(leaf, { commonName: 'x', dns: ['x'] })).toThrow('is not a CA');
  });
});
