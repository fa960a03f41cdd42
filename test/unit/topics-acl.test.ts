// Topic parsing (shared/topics.ts) and the broker ACL (server/mqtt/acl.ts) as pure functions.
import { describe, expect, it } from 'vitest';
import { mayPublish, maySubscribe } from '../../server/mqtt/acl.ts';
import { parseTopic, topics, type TopicKind } from '../../shared/topics.ts';

const KINDS: TopicKind[] = ['desired', 'status', 'telemetry', 'presence'];
const DEVICE_KINDS: TopicKind[] = ['status', 'telemetry', 'presence'];
const LIMIT = 256 * 1024;

describe('parseTopic', () => {
  it('parses every kind of a device topic built by topics.*', () => {
    for (const kind of KINDS) {
      expect(parseTopic(topics[kind]('dev-001'))).toEqual({ deviceId: 'dev-001', kind });
      expect(parseTopic(topics[kind]('A.b_c-9'))).toEqual({ deviceId: 'A.b_c-9', kind });
    }
    expect(parseTopic('fleet/v1/x/status')).toEqual({ deviceId: 'x', kind: 'status' });
  });

  it.each([
    ['wrong root', 'fleet/v2/dev-1/status'],
    ['other root', 'other/v1/dev-1/status'],
    ['root case', 'Fleet/v1/dev-1/status'],
    ['no root', 'dev-1/status'],
    ['leading slash', '/fleet/v1/dev-1/status'],
    ['$SYS', '$SYS/broker/clients'],
    ['+ as device', 'fleet/v1/+/status'],
    ['# as kind', 'fleet/v1/dev-1/#'],
    ['# at end', 'fleet/v1/#'],
    ['+ as kind', 'fleet/v1/dev-1/+'],
    ['+ inside id', 'fleet/v1/dev+1/status'],
    ['# inside id', 'fleet/v1/dev#1/status'],
    ['empty id', 'fleet/v1//status'],
    ['id starting with dot', 'fleet/v1/.hidden/status'],
    ['id ..', 'fleet/v1/../status'],
    ['id starting with dash', 'fleet/v1/-x/status'],
    ['id with space', 'fleet/v1/dev 1/status'],
    ['id with unicode', 'fleet/v1/dév/status'],
    ['id too long', `fleet/v1/${'a'.repeat(65)}/status`],
    ['unknown kind', 'fleet/v1/dev-1/commands'],
    ['kind case', 'fleet/v1/dev-1/Status'],
    ['extra level', 'fleet/v1/dev-1/status/x'],
    ['trailing slash', 'fleet/v1/dev-1/status/'],
    ['missing kind', 'fleet/v1/dev-1'],
    ['empty', ''],
  ])('rejects %s: %s', (_name, topic) => {
    expect(parseTopic(topic)).toBeNull();
  });

  // `kind in topicSchemas` once matched inherited Object.prototype keys ('constructor', '__proto__'...).
  for (const kind of ['constructor', 'toString', '__proto__', 'hasOwnProperty']) {
    it(`rejects an Object.prototype key as kind: fleet/v1/dev-1/${kind}`, () => {
      expect(parseTopic(`fleet/v1/dev-1/${kind}`)).toBeNull();
    });
  }

  it('accepts a 64-character id and refuses 65', () => {
    expect(parseTopic(`fleet/v1/${'a'.repeat(64)}/status`)).toEqual({ deviceId: 'a'.repeat(64), kind: 'status' });
    expect(parseTopic(`fleet/v1/${'a'.repeat(65)}/status`)).toBeNull();
  });
});

describe('mayPublish', () => {
  it('lets a device publish on its own status, telemetry and presence topics', () => {
    for (const kind of DEVICE_KINDS) {
      expect(mayPublish('dev-1', topics[kind]('dev-1'), 100, LIMIT)).toEqual({ ok: true });
    }
    expect(mayPublish('dev-1', topics.status('dev-1'), LIMIT, LIMIT).ok).toBe(true); // exactly at the limit
  });

  it.each([
    ["another device's status", topics.status('dev-2')],
    ["another device's telemetry", topics.telemetry('dev-2')],
    ["another device's presence", topics.presence('dev-2')],
    ['its own desired topic (server only)', topics.desired('dev-1')],
    ["another device's desired topic", topics.desired('dev-2')],
    ['#', '#'],
    ['fleet/v1/+/status', 'fleet/v1/+/status'],
    ['fleet/v1/+/desired', 'fleet/v1/+/desired'],
    ['fleet/v1/dev-1/#', 'fleet/v1/dev-1/#'],
    ['$SYS/x', '$SYS/x'],
    ['$SYS/broker/clients', '$SYS/broker/clients'],
    ['$share/g/fleet/v1/dev-1/status', '$share/g/fleet/v1/dev-1/status'],
    ['a non-fleet topic', 'some/other/topic'],
    ['an extra level', 'fleet/v1/dev-1/status/x'],
    ['a prefix of its id', topics.status('dev')],
    ['an id with its id as a prefix', topics.status('dev-10')],
    ['an Object.prototype key as kind (own id)', 'fleet/v1/dev-1/constructor'],
    ['toString as kind (own id)', 'fleet/v1/dev-1/toString'],
  ])('refuses %s', (_name, topic) => {
    const d = mayPublish('dev-1', topic, 10, LIMIT);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason.length).toBeGreaterThan(0);
  });

  it('refuses oversize payloads on otherwise allowed topics, naming the size', () => {
    const d = mayPublish('dev-1', topics.telemetry('dev-1'), LIMIT + 1, LIMIT);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason).toContain(String(LIMIT + 1));
    expect(mayPublish('dev-1', topics.status('dev-1'), 8 * 1024 * 1024, LIMIT).ok).toBe(false);
    expect(mayPublish(null, topics.presence('dev-1'), LIMIT + 1, LIMIT).ok).toBe(false);
  });

  it('a null client (a restored will) may publish only on a presence topic', () => {
    expect(mayPublish(null, topics.presence('dev-1'), 50, LIMIT)).toEqual({ ok: true });
    expect(mayPublish(null, topics.status('dev-1'), 50, LIMIT).ok).toBe(false);
    expect(mayPublish(null, topics.telemetry('dev-1'), 50, LIMIT).ok).toBe(false);
    expect(mayPublish(null, topics.desired('dev-1'), 50, LIMIT).ok).toBe(false);
    expect(mayPublish(null, '$SYS/x', 50, LIMIT).ok).toBe(false);
    expect(mayPublish(null, 'fleet/v1/+/presence', 50, LIMIT).ok).toBe(false);
    expect(mayPublish(null, 'random/topic', 50, LIMIT).ok).toBe(false);
  });
});

describe('maySubscribe', () => {
  it('lets a device subscribe to its own desired topic', () => {
    expect(maySubscribe('dev-1', topics.desired('dev-1'))).toEqual({ ok: true });
    expect(maySubscribe('A.b_c-9', 'fleet/v1/A.b_c-9/desired')).toEqual({ ok: true });
  });

  it.each([
    ["another device's desired topic", topics.desired('dev-2')],
    ['#', '#'],
    ['+/#', '+/#'],
    ['fleet/#', 'fleet/#'],
    ['fleet/v1/#', 'fleet/v1/#'],
    ['fleet/v1/+/desired', 'fleet/v1/+/desired'],
    ['fleet/v1/+/+', 'fleet/v1/+/+'],
    ['fleet/v1/dev-1/#', 'fleet/v1/dev-1/#'],
    ['fleet/v1/dev-1/+', 'fleet/v1/dev-1/+'],
    ['$SYS/x', '$SYS/x'],
    ['$SYS/#', '$SYS/#'],
    ['$share/g/fleet/v1/dev-1/desired', '$share/g/fleet/v1/dev-1/desired'],
    ["another device's status", topics.status('dev-2')],
    ["another device's telemetry", topics.telemetry('dev-2')],
    ["another device's presence", topics.presence('dev-2')],
    ['a case-changed copy of its own desired topic', 'fleet/v1/DEV-1/desired'],
  ])('refuses %s', (_name, filter) => {
    const d = maySubscribe('dev-1', filter);
    expect(d.ok).toBe(false);
    if (!d.ok) expect(d.reason).toContain('dev-1');
  });
});
