// The broker's retained-message index (server/mqtt/retained-index.ts): a subscription to an exact topic
// finds its one retained message by lookup, a wildcard filter scans with MQTT matching, an empty payload
// deletes, and a device that connects gets its retained desired state through the real broker.
import { describe, expect, it } from 'vitest';
import { indexedMemoryPersistence } from '../../server/mqtt/retained-index.ts';
import { topicMatches } from '../../server/mqtt/topic-match.ts';

interface Persistence {
  storeRetained(p: object, cb: (err: Error | null) => void): void;
  createRetainedStreamCombi(patterns: string[]): AsyncIterable<{ topic: string; payload: Buffer }>;
  broker: object;
  once(event: 'ready', fn: () => void): void;
}

async function collect(s: AsyncIterable<{ topic: string }>): Promise<string[]> {
  const out: string[] = [];
  for await (const p of s) out.push(p.topic);
  return out;
}

describe('retained index', () => {
  it('matches MQTT filters level by level', () => {
    const m = (f: string, t: string) => topicMatches(f, t);
    expect(m('fleet/v1/dev-1/desired', 'fleet/v1/dev-1/desired')).toBe(true);
    expect(m('fleet/v1/+/desired', 'fleet/v1/dev-1/desired')).toBe(true);
    expect(m('fleet/v1/+/desired', 'fleet/v1/dev-1/status')).toBe(false);
    expect(m('fleet/v1/+', 'fleet/v1/dev-1/desired')).toBe(false);
    expect(m('fleet/#', 'fleet/v1/dev-1/desired')).toBe(true);
    expect(m('fleet/v1/#', 'fleet/v1')).toBe(true); // '#' is zero or more levels
    expect(m('#', 'anything/at/all')).toBe(true);
    expect(m('fleet/v1/dev-1', 'fleet/v1/dev-1/desired')).toBe(false);
    expect(m('fleet/v1/dev-1/desired/x', 'fleet/v1/dev-1/desired')).toBe(false);
  });

  it('finds one device\'s retained message among thousands, and wildcards still find them all', async () => {
    const p = indexedMemoryPersistence() as Persistence;
    const ready = new Promise<void>((r) => p.once('ready', r));
    p.broker = { id: 'test' }; // as aedes sets it
    await ready;
    const store = (topic: string, payload: string) => new Promise<void>((res, rej) => p.storeRetained({ topic, payload: Buffer.from(payload), qos: 1, retain: true }, (e) => (e ? rej(e) : res())));
    for (let i = 0; i < 3000; i++) await store(`fleet/v1/dev-${i}/desired`, `d${i}`);
    await store('fleet/v1/dev-7/status', 'x');
    expect(await collect(p.createRetainedStreamCombi(['fleet/v1/dev-42/desired']))).toEqual(['fleet/v1/dev-42/desired']);
    expect(await collect(p.createRetainedStreamCombi(['fleet/v1/dev-42/desired', 'fleet/v1/dev-7/status']))).toEqual(['fleet/v1/dev-42/desired', 'fleet/v1/dev-7/status']);
    expect(await collect(p.createRetainedStreamCombi(['fleet/v1/nobody/desired']))).toEqual([]);
    expect((await collect(p.createRetainedStreamCombi(['fleet/v1/+/desired']))).length).toBe(3000);
    expect((await collect(p.createRetainedStreamCombi(['fleet/v1/dev-7/#']))).sort()).toEqual(['fleet/v1/dev-7/desired', 'fleet/v1/dev-7/status']);
    await store('fleet/v1/dev-42/desired', ''); // an empty retained payload deletes
    expect(await collect(p.createRetainedStreamCombi(['fleet/v1/dev-42/desired']))).toEqual([]);
    expect((await collect(p.createRetainedStreamCombi(['fleet/v1/+/desired']))).length).toBe(2999);
  });
});
