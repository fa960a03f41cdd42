// The two model slots on disk: <dataDir>/slots/{a,b}.onnx with the signed manifest text beside it
// ({a,b}.manifest.json) and the download in progress ({a,b}.part); and the shadow candidate's own place
// (issue 17), shadow.onnx and shadow.manifest.json, which is never active nor a revert target. Reading a slot re-checks its bytes
// against the state record every time, so a damaged or half-written file is never loaded.
// A slot holding a set of models (issue 19) keeps the primary in those files and model i of `extra`
// (1-based) in {a,b}.<i>.onnx and {a,b}.<i>.manifest.json.
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { sha256Hex } from '../shared/crypto.ts';
import { Manifest } from '../shared/messages.ts';
import { disk } from './disk.ts';
import { removeIfExists } from './downloader.ts';
import { slotModels, type ShadowSlot, type SlotModel, type SlotRecord } from './state-store.ts';

export type SlotFile = 'onnx' | 'part' | 'manifest.json';

export class SlotFiles {
  readonly dir: string;
  constructor(readonly dataDir: string) {
    this.dir = join(dataDir, 'slots');
  }

  ensure(): void {
    disk.mkdirSync(this.dir, { recursive: true });
  }

  /** `index` 0 is the primary model, i > 0 model i of a multi-model slot */
  path(slot: ShadowSlot, file: SlotFile, index = 0): string {
    return join(this.dir, index === 0 ? `${slot}.${file}` : `${slot}.${index}.${file}`);
  }

  /** Everything a slot holds, including a download in progress and the files of every model of a set. */
  clear(slot: ShadowSlot): void {
    for (const f of ['onnx', 'part', 'manifest.json', 'manifest.json.tmp'] as const) removeIfExists(this.path(slot, f as SlotFile));
    if (!existsSync(this.dir)) return;
    for (const name of readdirSync(this.dir)) if (/^[ab]\.\d+\./.test(name) && name.startsWith(`${slot}.`)) removeIfExists(join(this.dir, name));
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
  readManifest(slot: ShadowSlot, record: SlotRecord): Manifest | null {
    try {
      const text = readFileSync(this.path(slot, 'manifest.json'), 'utf8');
      if (sha256Hex(text) !== record.manifestSha256) return null;
      const parsed = Manifest.safeParse(JSON.parse(text));
      return parsed.success ? parsed.data : null;
    } catch {
      return null;
    }
  }

  /** The slot's bytes and manifest (the primary's) if every model in it is exactly what the record says, else why not. */
  readVerified(slot: ShadowSlot, record: SlotRecord): { bytes: Uint8Array; manifest: Manifest } | { error: string } {
    const set = this.readVerifiedSet(slot, record);
    return 'error' in set ? set : set.models[0];
  }

  /** Every model of the slot, the primary first, each checked against the record; or the first reason one does not verify. */
  readVerifiedSet(slot: ShadowSlot, record: SlotRecord): { models: { record: SlotModel; bytes: Uint8Array; manifest: Manifest }[] } | { error: string } {
    const models = [];
    for (const [i, m] of slotModels(record).entries()) {
      const read = this.readOne(slot, m, i);
      if ('error' in read) return { error: i === 0 ? read.error : `${m.modelId}: ${read.error}` };
      models.push({ record: m, ...read });
    }
    return { models };
  }

  private readOne(slot: ShadowSlot, record: SlotModel, index: number): { bytes: Uint8Array; manifest: Manifest } | { error: string } {
    const onnx = this.path(slot, 'onnx', index);
    const man = this.path(slot, 'manifest.json', index);
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
