// A model of a disk that loses power, fed by the file-system operations the real agent performed.
//
// The recorder (installed through device-agent/disk.ts) logs every mutating call under one folder with
// its data. The model replays the log over a snapshot of the folder (taken as fully synced) and, after
// each operation, lists what a power cut at that moment may leave:
// - file data written since the file's last fsync may be lost (the file keeps the content it had at
//   its last fsync; a file never synced is empty) or torn (its writes up to one of them applied, that
//   one only half);
// - a create, rename or unlink is on disk only once its folder has been fsynced, but may reach the disk
//   before that (so a rename may be lost while the renamed file's data is on disk, and a rename may be
//   on disk while the data it names is not);
// - fsynced data and names of a fsynced folder survive; a folder created during the run is itself a
//   name in its parent folder (lost until the parent is fsynced, and everything in it with it).
// Folders are not removed during a run.
import { createHash } from 'node:crypto';
import { mkdirSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join, relative, sep } from 'node:path';
import { realDisk, useDisk, type Disk } from '../../../device-agent/disk.ts';

export type Op =
  | { kind: 'open'; fd: number; path: string; flags: 'w' | 'a' | 'r'; dir: boolean }
  | { kind: 'write'; fd: number; data: Buffer }
  | { kind: 'fsync'; fd: number }
  | { kind: 'close'; fd: number }
  | { kind: 'rename'; from: string; to: string }
  | { kind: 'unlink'; path: string }
  | { kind: 'mkdir'; path: string }
  | { kind: 'truncate'; path: string; len: number }
  /** not a disk operation: something the test observed at this point (a status the server stored) */
  | { kind: 'mark'; what: string; seq: number };

export type Tree = Map<string, Buffer>;

export interface Recording { snapshot: Tree; dirs: string[]; ops: Op[] }

/** Files under `root`, by path relative to it ('/'-separated), and its folders ('' is the root). */
export function readTree(root: string): { files: Tree; dirs: string[] } {
  const files: Tree = new Map();
  const dirs: string[] = [''];
  const walk = (rel: string) => {
    for (const name of readdirSync(join(root, rel))) {
      const r = rel ? `${rel}/${name}` : name;
      if (statSync(join(root, r)).isDirectory()) { dirs.push(r); walk(r); } else files.set(r, readFileSync(join(root, r)));
    }
  };
  walk('');
  return { files, dirs };
}

export function writeTree(root: string, dirs: string[], files: Tree): void {
  for (const d of dirs) mkdirSync(join(root, d), { recursive: true });
  for (const [p, data] of files) writeFileSync(join(root, p), data);
}

export function treeDigest(files: Tree, dirs: string[] = []): string {
  const h = createHash('sha256');
  for (const d of [...dirs].sort()) h.update(`dir ${d}\0`);
  for (const p of [...files.keys()].sort()) h.update(p).update('\0').update(createHash('sha256').update(files.get(p)!).digest()).update('\0');
  return h.digest('hex');
}

/** Logs the agent's mutating calls under `root` (others pass through unrecorded). */
export class DiskRecorder {
  private root: string | null = null;
  private ops: Op[] = [];
  private snapshot: { files: Tree; dirs: string[] } | null = null;
  private readonly fds = new Map<number, string>();

  install(): void {
    const d = realDisk;
    const rel = (p: string) => {
      if (!this.root) return null;
      const r = relative(this.root, String(p));
      return r.startsWith('..') || r.startsWith(sep) ? null : r.split(sep).join('/');
    };
    const over: Partial<Disk> = {
      openSync: ((path: string, flags: string, mode?: number) => {
        const fd = d.openSync(path, flags, mode);
        const r = rel(path);
        if (r !== null) {
          this.fds.set(fd, r);
          const dir = statSync(path).isDirectory();
          if (flags !== 'w' && flags !== 'a' && flags !== 'r') throw new Error(`recorder: open flags ${flags} not modelled`);
          this.ops.push({ kind: 'open', fd, path: r, flags, dir });
        }
        return fd;
      }) as Disk['openSync'],
      writeSync: (fd, data) => {
        const n = d.writeSync(fd, data);
        if (this.fds.has(fd)) {
          if (n !== data.byteLength) throw new Error('recorder: short write not modelled');
          this.ops.push({ kind: 'write', fd, data: Buffer.from(data) });
        }
        return n;
      },
      fsyncSync: (fd) => { d.fsyncSync(fd); if (this.fds.has(fd)) this.ops.push({ kind: 'fsync', fd }); },
      closeSync: (fd) => { d.closeSync(fd); if (this.fds.has(fd)) { this.ops.push({ kind: 'close', fd }); this.fds.delete(fd); } },
      renameSync: (from, to) => {
        d.renameSync(from, to);
        const a = rel(String(from)), b = rel(String(to));
        if (a !== null && b !== null) this.ops.push({ kind: 'rename', from: a, to: b });
        else if (a !== null || b !== null) throw new Error('recorder: rename across the recorded folder');
      },
      unlinkSync: (path) => { d.unlinkSync(path); const r = rel(String(path)); if (r !== null) this.ops.push({ kind: 'unlink', path: r }); },
      mkdirSync: (path, opts) => {
        const r = rel(path);
        const existed = (() => { try { return statSync(path).isDirectory(); } catch { return false; } })();
        d.mkdirSync(path, opts);
        if (r !== null && !existed) this.ops.push({ kind: 'mkdir', path: r });
      },
      truncateSync: (path, len) => { d.truncateSync(path, len); const r = rel(String(path)); if (r !== null) this.ops.push({ kind: 'truncate', path: r, len: len ?? 0 }); },
    };
    useDisk(over);
  }

  uninstall(): void { useDisk(null); }

  /** Start a run: the folder as it is now is the (synced) snapshot. */
  begin(root: string): void {
    this.root = root;
    this.ops = [];
    this.fds.clear();
    this.snapshot = readTree(root);
  }

  mark(what: string, seq: number): void {
    if (this.root) this.ops.push({ kind: 'mark', what, seq });
  }

  end(): Recording {
    if (!this.snapshot) throw new Error('recorder: not begun');
    const out = { snapshot: this.snapshot.files, dirs: this.snapshot.dirs, ops: this.ops };
    this.root = null;
    this.snapshot = null;
    return out;
  }
}

type Change = { kind: 'write'; offset: number; data: Buffer } | { kind: 'trunc'; len: number };
interface Inode { id: number; durable: Buffer; log: Change[] }
/** a folder's entry in its parent */
interface DirRef { dir: string }
interface Dir { durable: Map<string, Inode | DirRef>; cur: Map<string, Inode | DirRef> }
const isDir = (x: Inode | DirRef): x is DirRef => 'dir' in x;

function apply(base: Buffer, changes: Change[], tornAt = -1): Buffer {
  let b = Buffer.from(base);
  for (let i = 0; i < changes.length; i++) {
    const c = changes[i];
    if (tornAt >= 0 && i > tornAt) break;
    if (c.kind === 'trunc') { b = Buffer.from(b.subarray(0, Math.min(c.len, b.length))); if (c.len > b.length) b = Buffer.concat([b, Buffer.alloc(c.len - b.length)]); continue; }
    const data = i === tornAt ? c.data.subarray(0, c.data.length >> 1) : c.data;
    const end = c.offset + data.length;
    if (end > b.length) b = Buffer.concat([b, Buffer.alloc(end - b.length)]);
    data.copy(b, c.offset);
  }
  return b;
}

/** One crash state: the files a power cut after `prefix` operations may leave, and how it was chosen. */
export interface CrashState { prefix: number; files: Tree; dirs: string[]; digest: string; how: string }

/** Replays `rec` and yields the distinct crash states of every prefix (0 = the snapshot itself), or of prefix `at` only. */
export function crashStates(rec: Recording, at?: number): { states: CrashState[]; considered: number } {
  let nextId = 0;
  const dirs = new Map<string, Dir>();
  const split = (p: string) => { const i = p.lastIndexOf('/'); return i < 0 ? ['', p] : [p.slice(0, i), p.slice(i + 1)]; };
  const addDir = (d: string, synced: boolean) => {
    dirs.set(d, { durable: new Map(), cur: new Map() });
    if (d === '') return;
    const parent = dirs.get(split(d)[0]);
    if (!parent) throw new Error(`model: parent of folder ${d} unknown`);
    const ref: DirRef = { dir: d };
    parent.cur.set(split(d)[1], ref);
    if (synced) parent.durable.set(split(d)[1], ref);
  };
  for (const d of [...rec.dirs].sort((a, b) => a.length - b.length)) addDir(d, true);
  const dirOf = (p: string) => {
    const d = dirs.get(split(p)[0]);
    if (!d) throw new Error(`model: folder of ${p} is not in the snapshot`);
    return d;
  };
  for (const [p, data] of rec.snapshot) {
    const ino: Inode = { id: nextId++, durable: data, log: [] };
    const d = dirOf(p);
    d.durable.set(split(p)[1], ino);
    d.cur.set(split(p)[1], ino);
  }
  const fds = new Map<number, { ino: Inode | null; dir: string | null; pos: number; append: boolean }>();
  const seen = new Map<string, CrashState>();
  let considered = 0;

  const emit = (prefix: number) => {
    if (at !== undefined && prefix !== at) return;
    const inodes = new Set<Inode>();
    for (const d of dirs.values()) for (const m of [d.durable, d.cur]) for (const i of m.values()) if (!isDir(i)) inodes.add(i);
    const dirty = [...dirs.entries()].filter(([, d]) => !sameEntries(d.durable, d.cur)).map(([n]) => n);
    type EntryPick = { how: string; cur: (dir: string) => boolean };
    const entryPicks: EntryPick[] = [{ how: 'names as synced', cur: () => false }];
    if (dirty.length) {
      entryPicks.push({ how: 'all names applied', cur: () => true });
      if (dirty.length > 1) for (const x of dirty) {
        entryPicks.push({ how: `names of ${x || '.'} applied`, cur: (d) => d === x });
        entryPicks.push({ how: `names of ${x || '.'} lost`, cur: (d) => d !== x });
      }
    }
    type ContentPick = { how: string; content: (i: Inode) => Buffer };
    const unsynced = [...inodes].filter((i) => i.log.length > 0);
    const contentPicks: ContentPick[] = [{ how: 'data applied', content: (i) => apply(i.durable, i.log) }];
    if (unsynced.length) {
      contentPicks.push({ how: 'unsynced data lost', content: (i) => i.durable });
      for (const x of unsynced) {
        if (unsynced.length > 1) contentPicks.push({ how: `data of inode ${x.id} lost`, content: (i) => (i === x ? i.durable : apply(i.durable, i.log)) });
        const writes = x.log.map((c, n) => (c.kind === 'write' ? n : -1)).filter((n) => n >= 0);
        const torn = [...new Set([writes[0], writes[writes.length >> 1], writes[writes.length - 1]])].filter((n) => n !== undefined);
        for (const t of torn) contentPicks.push({ how: `inode ${x.id} torn at change ${t}`, content: (i) => (i === x ? apply(i.durable, i.log, t) : apply(i.durable, i.log)) });
      }
    }
    for (const e of entryPicks) for (const c of contentPicks) {
      considered++;
      const files: Tree = new Map();
      const present: string[] = [];
      const cache = new Map<Inode, Buffer>();
      const walk = (dn: string) => {
        present.push(dn);
        const d = dirs.get(dn)!;
        for (const [name, x] of e.cur(dn) ? d.cur : d.durable) {
          if (isDir(x)) { walk(x.dir); continue; }
          let b = cache.get(x);
          if (!b) { b = c.content(x); cache.set(x, b); }
          files.set(dn ? `${dn}/${name}` : name, b);
        }
      };
      walk('');
      const digest = treeDigest(files, present);
      if (!seen.has(digest)) seen.set(digest, { prefix, files, dirs: present, digest, how: `${e.how}; ${c.how}` });
    }
  };

  emit(0);
  rec.ops.forEach((op, n) => {
    switch (op.kind) {
      case 'open': {
        if (op.dir) { fds.set(op.fd, { ino: null, dir: op.path === '' ? '' : op.path, pos: 0, append: false }); break; }
        const d = dirOf(op.path);
        const name = split(op.path)[1];
        let ino = d.cur.get(name);
        if (ino && isDir(ino)) throw new Error(`model: ${op.path} is a folder`);
        if (!ino) {
          if (op.flags === 'r') throw new Error(`model: open for reading of missing ${op.path}`);
          ino = { id: nextId++, durable: Buffer.alloc(0), log: [] };
          d.cur.set(name, ino);
        } else if (op.flags === 'w') ino.log.push({ kind: 'trunc', len: 0 });
        fds.set(op.fd, { ino, dir: null, pos: 0, append: op.flags === 'a' });
        break;
      }
      case 'write': {
        const f = fds.get(op.fd)!;
        if (!f.ino) throw new Error('model: write to a folder');
        const offset = f.append ? apply(f.ino.durable, f.ino.log).length : f.pos;
        f.ino.log.push({ kind: 'write', offset, data: op.data });
        f.pos = offset + op.data.length;
        break;
      }
      case 'fsync': {
        const f = fds.get(op.fd)!;
        if (f.ino) { f.ino.durable = apply(f.ino.durable, f.ino.log); f.ino.log = []; } else {
          const d = dirs.get(f.dir!);
          if (!d) throw new Error(`model: fsync of unknown folder ${f.dir}`);
          d.durable = new Map(d.cur);
        }
        break;
      }
      case 'close': fds.delete(op.fd); break;
      case 'rename': {
        const from = dirOf(op.from), to = dirOf(op.to);
        const ino = from.cur.get(split(op.from)[1]);
        if (!ino || isDir(ino)) throw new Error(`model: rename of missing file ${op.from}`);
        from.cur.delete(split(op.from)[1]);
        to.cur.set(split(op.to)[1], ino);
        break;
      }
      case 'unlink': dirOf(op.path).cur.delete(split(op.path)[1]); break;
      case 'truncate': {
        const ino = dirOf(op.path).cur.get(split(op.path)[1]);
        if (!ino || isDir(ino)) throw new Error(`model: truncate of missing file ${op.path}`);
        ino.log.push({ kind: 'trunc', len: op.len });
        break;
      }
      case 'mkdir': if (!dirs.has(op.path)) addDir(op.path, false); break;
      case 'mark': break;
    }
    if (op.kind !== 'mark' && op.kind !== 'close') emit(n + 1);
  });
  return { states: [...seen.values()], considered };
}

function sameEntries(a: Map<string, Inode | DirRef>, b: Map<string, Inode | DirRef>): boolean {
  if (a.size !== b.size) return false;
  for (const [k, v] of a) if (b.get(k) !== v) return false;
  return true;
}

/** What the test observed before a power cut after `prefix` operations (marks included in the count). */
export function marksBefore(rec: Recording, prefix: number): { what: string; seq: number }[] {
  return rec.ops.slice(0, prefix).flatMap((op) => (op.kind === 'mark' ? [{ what: op.what, seq: op.seq }] : []));
}

export const materialize = (root: string, s: CrashState) => writeTree(root, s.dirs, s.files);
