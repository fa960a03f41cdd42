// Offline verification of an exported bundle, the same chain a device walks: root -> key set ->
// manifest -> artifact. Every check is reported (a failure does not hide the ones after it, except
// where a later check needs what failed).
import { b64, keyIdOf, sha256Hex } from '../shared/crypto.ts';
import { envelopeDigest, envelopeSignatureValid } from '../shared/envelope.ts';
import { KeySet, Manifest } from '../shared/messages.ts';
import type { BundleFile } from './bundle-file.ts';

export interface Check { name: string; ok: boolean; detail: string }

export function verifyBundle(bundle: BundleFile, artifact: Uint8Array | null, rootPublicKey: Uint8Array, now = Date.now(), artifactProblem?: string): { ok: boolean; checks: Check[] } {
  const checks: Check[] = [];
  const add = (name: string, ok: boolean, detail: string) => { checks.push({ name, ok, detail }); return ok; };
  const rootKeyId = keyIdOf(rootPublicKey);

  const keysetSigned = add('keyset signed by root', bundle.keyset.keyId === rootKeyId && envelopeSignatureValid(bundle.keyset, rootPublicKey),
    bundle.keyset.keyId === rootKeyId ? `root ${rootKeyId}` : `signed by ${bundle.keyset.keyId}, the root is ${rootKeyId}`);
  const keyset = keysetSigned ? parse(KeySet, bundle.keyset.signed) : null;
  if (keysetSigned) add('keyset parses', keyset !== null, keyset ? `key set v${keyset.version}, ${keyset.keys.length} key(s), ${keyset.revoked.length} revoked` : 'signed text is not a key set');
  if (keyset) add('keyset not expired', Date.parse(keyset.expires) > now, `expires ${keyset.expires}`);

  const keyId = bundle.manifest.keyId;
  const entry = keyset?.keys.find((k) => k.keyId === keyId);
  if (keyset) {
    const revoked = keyset.revoked.includes(keyId);
    add('manifest key valid', !revoked && !!entry && entry.roles.includes('targets'),
      revoked ? `key ${keyId} is REVOKED` : !entry ? `key ${keyId} is UNKNOWN to key set v${keyset.version}` : `key ${keyId} (roles ${entry.roles.join(', ')})`);
  }
  const pub = entry ? b64.decode(entry.publicKey) : null;
  const sigOk = !!pub && keyIdOf(pub) === keyId && envelopeSignatureValid(bundle.manifest, pub);
  if (entry) add('manifest signature', sigOk, sigOk ? 'verifies' : `does not verify with key ${keyId}`);
  const digest = envelopeDigest(bundle.manifest);
  add('manifest digest', digest === bundle.manifestSha256, digest === bundle.manifestSha256 ? digest : `${digest} differs from the named ${bundle.manifestSha256}`);

  const manifest = parse(Manifest, bundle.manifest.signed);
  add('manifest parses', manifest !== null, manifest ? `${manifest.modelId} v${manifest.version}` : 'signed text is not a manifest');
  if (manifest) {
    add('manifest not expired', Date.parse(manifest.expires) > now, `expires ${manifest.expires}`);
    if (!artifact) add('artifact present', false, artifactProblem ?? 'no artifact');
    else {
      add('artifact length', artifact.byteLength === manifest.artifact.length, `${artifact.byteLength} bytes, manifest says ${manifest.artifact.length}`);
      const sha = sha256Hex(artifact);
      add('artifact sha256', sha === manifest.artifact.sha256, sha === manifest.artifact.sha256 ? sha : `${sha} differs from the manifest's ${manifest.artifact.sha256}`);
    }
  }
  return { ok: checks.every((c) => c.ok), checks };
}

function parse<T>(schema: { safeParse(v: unknown): { success: boolean; data?: T } }, text: string): T | null {
  try {
    const r = schema.safeParse(JSON.parse(text));
    return r.success ? r.data! : null;
  } catch {
    return null;
  }
}
