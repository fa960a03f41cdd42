import { z } from 'zod';

/** Device and model ids: safe in MQTT topics (no '/', '+', '#'), file names and URLs. */
export const ID_PATTERN = /^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$/;
export const SHA256_HEX_PATTERN = /^[0-9a-f]{64}$/;
export const DeviceId = z.string().regex(ID_PATTERN, 'ids are 1-64 characters of A-Z a-z 0-9 . _ - and start with a letter or digit');
export const ModelId = DeviceId;
export const Sha256Hex = z.string().regex(SHA256_HEX_PATTERN, 'expected a lowercase hex SHA-256 (64 characters)');
export const KeyId = z.string().regex(/^[0-9a-f]{32}$/, 'expected a key id (32 lowercase hex characters)');
export const IsoTime = z.iso.datetime({ offset: true });
export const Base64 = z.string().regex(/^[A-Za-z0-9+/]*={0,2}$/, 'expected base64');
