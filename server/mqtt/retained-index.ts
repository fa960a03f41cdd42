// aedes's in-memory persistence, with retained messages looked up by topic. The stock one tests every
// retained message against each new subscription's filter (aedes-persistence 11, asyncPersistence.js
// retainedMessagesByPattern): a device subscribing to its own desired topic costs one match per device
// holding a retained desired state, so connecting N devices costs N^2 topic matches (10,000 devices:
// 10^8, tens of CPU seconds). Here a filter without wildcards (every device's) is one Map lookup; a
// filter with `+` or `#` (the server's, operators') still scans every retained message.
import { createRequire } from 'node:module';
import type { Readable } from 'node:stream';
import { topicMatches } from './topic-match.ts';

const require = createRequire(import.meta.url);
const AsyncPersistence = require('aedes-persistence/asyncPersistence.js') as new (opts?: object) => object;
const { CallBackPersistence } = require('aedes-persistence/callBackPersistence.js') as { CallBackPersistence: new (factory: (opts: object) => object, opts?: object) => unknown };
const { Readable: ReadableCtor } = require('node:stream') as { Readable: typeof Readable };

interface RetainedPacket { topic: string; payload: Buffer | Uint8Array | string }

/** Retained messages that match `pattern`, in insertion order for a scan, at most one for an exact topic. */
export function* retainedMatching(retained: Map<string, RetainedPacket>, pattern: string): Generator<RetainedPacket> {
  if (!pattern.includes('+') && !pattern.includes('#')) {
    const p = retained.get(pattern);
    if (p) yield p;
    return;
  }
  for (const [topic, packet] of retained) if (topicMatches(pattern, topic)) yield packet;
}

class IndexedRetainedPersistence extends (AsyncPersistence as unknown as new (opts?: object) => Record<string, unknown>) {
  private readonly retainedByTopic = new Map<string, RetainedPacket>();
  async storeRetained(pkt: RetainedPacket): Promise<void> {
    const packet = Object.assign({}, pkt);
    if (packet.payload.length === 0) this.retainedByTopic.delete(packet.topic);
    else this.retainedByTopic.set(packet.topic, packet);
  }
  createRetainedStreamCombi(patterns: string[]): Readable {
    const all = this.retainedByTopic;
    return ReadableCtor.from((function* () { for (const p of patterns) yield* retainedMatching(all, p); })());
  }
  createRetainedStream(pattern: string): Readable {
    return ReadableCtor.from(retainedMatching(this.retainedByTopic, pattern));
  }
  /** for tests and the memory figures */
  get retainedCount(): number { return this.retainedByTopic.size; }
}

/** The persistence to give Aedes.createBroker. */
export function indexedMemoryPersistence(opts: object = {}): unknown {
  return new CallBackPersistence((o) => new IndexedRetainedPersistence(o), opts);
}
