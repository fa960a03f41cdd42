// The two model slots on disk: <dataDir>/slots/{a,b}.onnx with the signed manifest text beside it
// ({a,b}.manifest.json) and the download in progress ({a,b}.part). Reading a slot re-checks its bytes
// against the state record every time, so a damaged or half-written file is never loaded.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../shared/crypto.ts';
import { Manifest } from '../shared/messages.ts';
import { disk } from './disk.ts';
import { removeIfExists } from './downloader.ts';
import type { SlotName, SlotRecord } from './state-store.ts';

export type SlotFile = 'onnx' | 'part' | 'manifest.json';

export class SlotFiles {
  readonly dir: string;
  constructor(readonly dataDir: string) {
    this.dir = join(dataDir, 'slots');
  }

  ensure(): void {
    disk.mkdirSync(this.dir, { recursive: true });
  }

  path(slot: SlotName, file: SlotFile): string {
    return join(this.dir, `${slot}.${file}`);
  }

  /** Everything a slot holds, including a download in progress. */
  clear(slot: SlotName): void {
    for (const f of ['onnx', 'part', 'manifest.json', 'manifest.json.tmp'] as const) removeIfExists(this.path(slot, f as SlotFile));
  }

  /** Leftovers of atomic writes cut short by a crash (the target still holds the old content). */
  removeTemps(): string[] {
    const removed: string[] = [];
    for (const dir of [this.dir, this.dataDir]) {
      if (!existsSync(dir)) continue;
      for (const name of readdirSync(dir)) {
        if (name.endsWith('.tmp')) { removeIfExists(join(dir, name)); removed.push(name); }
      }
    }
    return removed;
  }

  /** The slot's signed manifest text, parsed, if it is exactly what the record names (else null). */
  readManifest(slot: SlotName, record: SlotRecord): Manifest | null {
    try {
      const text = readFileSync(this.path(slot, 'manifest.json'), 'utf8');
      if (sha256Hex(text) !== record.manifestSha256) return null;
      const parsed = Manifest.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** The slot's bytes and manifest if they are exactly what the record says, else null and why. */
  readVerified(slot: SlotName, record: SlotRecord): { bytes: Uint8Array; manifest: Manifest } | { error: string } {
    const onnx = this.path(slot, 'onnx');
    const man = this.path(slot, 'manifest.json');
    if (!existsSync(onnx) || !existsSync(man)) return { error: 'slot files missing' };
    const bytes: Uint8Array = readFileSync(onnx);
    if (bytes.byteLength !== record.length) return { error: `artifact is ${bytes.byteLength} bytes, the record says ${record.length}` };
    if (sha256Hex(bytes) !== record.artifactSha256) return { error: 'artifact SHA-256 differs from the record' };
    const text = readFileSync(man, 'utf8');
    if (sha256Hex(text) !== record.manifestSha256) return { error: 'manifest text differs from the record' };
    const parsed = Manifest.safeParse(JSON.parse(text));
    if (!parsed.success) return { error: `manifest does not parse: ${parsed.error.issues[0].message}` };
    return { bytes, manifest: parsed.data };
  }
}
