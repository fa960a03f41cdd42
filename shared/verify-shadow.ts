// The device's trust decision for the shadow candidate a verified desired state names (issue 17): the
// same checks as the active manifest (verify-desired.ts), against the key set that desired state
// carried. Pure; every failure names a reason code.
import { keyIdOf } from './crypto.ts';
import { envelopeDigest, parseSigned } from './envelope.ts';
import { Manifest, type DesiredMessage } from './messages.ts';
import { UpdateRefused } from './reason-codes.ts';
import { checkSignedBy, compareSemver, type DeviceIdentity, type SignatureCache, type TrustState, type VerifiedDesired } from './verify-desired.ts';

export interface VerifiedShadow {
  manifest: Manifest;
  manifestSha256: string;
  /** the exact signed manifest text (what the slot keeps beside the artifact) */
  manifestText: string;
  sampleRate: number;
}

/** null when the desired state names no shadow; throws UpdateRefused when the named shadow does not verify. */
export function verifyShadow(msg: DesiredMessage, v: VerifiedDesired, trust: TrustState, device: DeviceIdentity, clockNow: number, cache?: SignatureCache): VerifiedShadow | null {
  const want = v.desired.shadow;
  if (!want) return null;
  const now = Math.max(clockNow, trust.timeFloor);
  const env = msg.shadowManifest;
  if (!env) throw new UpdateRefused('MANIFEST_MISMATCH', `desired state names shadow manifest ${want.manifestSha256.slice(0, 12)}, none was delivered`);
  const manifestSha256 = envelopeDigest(env);
  if (manifestSha256 !== want.manifestSha256) throw new UpdateRefused('MANIFEST_MISMATCH', `desired state names shadow manifest ${want.manifestSha256.slice(0, 12)}, delivered ${manifestSha256.slice(0, 12)}`);
  checkSignedBy(env, v.keyset, 'targets', 'shadow manifest', keyIdOf(trust.rootPublicKey), cache);
  const manifest = parseSigned(env, Manifest, 'shadow manifest');
  if (manifest.modelId !== want.modelId || manifest.version !== want.version) {
    throw new UpdateRefused('MANIFEST_MISMATCH', `shadow manifest is ${manifest.modelId} v${manifest.version}, desired state names ${want.modelId} v${want.version}`);
  }
  if (Date.parse(manifest.expires) <= now) throw new UpdateRefused('EXPIRED', `shadow manifest ${manifest.modelId} v${manifest.version} expired at ${manifest.expires}`);
  const floor = trust.versionFloors[manifest.modelId] ?? 0;
  if (manifest.version < floor) throw new UpdateRefused('ROLLBACK', `shadow ${manifest.modelId} v${manifest.version} is below this device's floor v${floor}`);
  if (manifest.hardwareTargets.length > 0 && !manifest.hardwareTargets.includes(device.hardware)) {
    throw new UpdateRefused('WRONG_HARDWARE', `shadow manifest targets ${manifest.hardwareTargets.join(', ')}, this device is ${device.hardware}`);
  }
  if (compareSemver(manifest.runtime.minAgentVersion, device.agentVersion) > 0) {
    throw new UpdateRefused('RUNTIME_INCOMPATIBLE', `shadow manifest needs agent >= ${manifest.runtime.minAgentVersion}, this is ${device.agentVersion}`);
  }
  if (manifestSha256 === v.manifestSha256) throw new UpdateRefused('MALFORMED', 'the shadow candidate is the active model itself');
  return { manifest, manifestSha256, manifestText: env.signed, sampleRate: want.sampleRate };
}
