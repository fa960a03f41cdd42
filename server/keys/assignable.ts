// A bundle signed by a key the root has revoked (or that this server has stopped using while a
// revocation waits for the offline root) would be refused by every device (REVOKED_KEY). Assigning it
// is refused up front, naming the key and what to do: re-sign it as a new version
// (POST /v1/bundles/:sha256/resign, the same path a key revocation takes for bundles devices hold) or
// push the model again. Decided here once, for the assignment route and campaign creation.
import type { Envelope, Manifest } from '../../shared/messages.ts';
import { AppError } from '../errors.ts';
import type { KeyStore } from './key-store.ts';

export function assertAssignable(keys: Pick<KeyStore, 'keyset' | 'pendingKeyset'>, manifestSha256: string, bundle: { envelope: Envelope; manifest: Pick<Manifest, 'modelId' | 'version'> }): void {
  const keyId = bundle.envelope.keyId;
  const { modelId, version } = bundle.manifest;
  const what = `bundle ${manifestSha256} (${modelId} v${version})`;
  const todo = `re-sign it as a new version with POST /v1/bundles/${manifestSha256}/resign (fleetctl: push the model again) and assign that manifest`;
  const revoked = keys.keyset.revoked.includes(keyId) || (keys.pendingKeyset?.revoked.includes(keyId) ?? false);
  if (revoked) {
    throw new AppError('FLEET_ERR_BUNDLE_KEY_REVOKED', `${what} is signed by key ${keyId}, which is revoked: devices would refuse it (REVOKED_KEY); ${todo}`, 409,
      { keyId, manifestSha256, resign: `/v1/bundles/${manifestSha256}/resign` });
  }
  if (!keys.keyset.keys.some((k) => k.keyId === keyId && k.roles.includes('targets'))) {
    throw new AppError('FLEET_ERR_BUNDLE_KEY_UNTRUSTED', `${what} is signed by key ${keyId}, which the current key set does not list as a targets key: devices would refuse it (UNKNOWN_KEY); ${todo}`, 409,
      { keyId, manifestSha256, resign: `/v1/bundles/${manifestSha256}/resign` });
  }
}
