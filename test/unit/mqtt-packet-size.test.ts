// The fixed-header guard shared by the broker's socket guard and the agent's stream (shared/mqtt-packet-size.ts):
// it must judge a packet by its announced Remaining Length however the bytes are split into chunks.
import { describe, expect, it } from 'vitest';
import { PacketSizeGuard } from '../../shared/mqtt-packet-size.ts';
import { freshUntil } from '../../shared/freshness.ts';

const rl = (n: number) => { const out: number[] = []; do { let b = n % 128; n = Math.floor(n / 128); if (n > 0) b |= 0x80; out.push(b); } while (n > 0); return out; };
const packet = (len: number) => Uint8Array.from([0x30, ...rl(len), ...new Array(Math.min(len, 64)).fill(0)]);

describe('PacketSizeGuard', () => {
  it.each([
    ['at the limit', 1024, null],
    ['one byte over', 1025, 'packet of 1025 bytes is over the 1024-byte limit'],
    ['250 MB', 250 * 1024 * 1024, `packet of ${250 * 1024 * 1024} bytes is over the 1024-byte limit`],
    ['the MQTT maximum', 268_435_455, 'packet of 268435455 bytes is over the 1024-byte limit'],
  ])('a header announcing %s', (_n, len, why) => {
    expect(new PacketSizeGuard(1024).feed(packet(len))).toBe(why);
  });

  it('judges the same however the header is split, byte by byte', () => {
    const g = new PacketSizeGuard(1024);
    const bytes = Uint8Array.from([0x30, ...rl(2_000_000)]);
    const answers = Array.from(bytes, (b) => g.feed(Uint8Array.of(b)));
    expect(answers.slice(0, -1).every((a) => a === null)).toBe(true);
    expect(answers.at(-1)).toBe('packet of 2000000 bytes is over the 1024-byte limit');
  });

  it('skips bodies it accepted, across chunks, and judges the next header', () => {
    const g = new PacketSizeGuard(1024);
    const first = Uint8Array.from([0x30, ...rl(1000), ...new Array(600).fill(1)]);
    expect(g.feed(first)).toBeNull();
    const rest = Uint8Array.from([...new Array(400).fill(1), 0xc0, 0x00, 0x30, ...rl(5000)]);
    expect(g.feed(rest)).toBe('packet of 5000 bytes is over the 1024-byte limit');
  });

  it('a body that merely looks like a huge header is skipped, not judged', () => {
    const g = new PacketSizeGuard(1024);
    expect(g.feed(Uint8Array.from([0x30, ...rl(6), 0x30, 0xff, 0xff, 0xff, 0x7f, 0x00]))).toBeNull();
  });

  it('a Remaining Length field longer than four bytes is malformed [MQTT-2.2.3]', () => {
    expect(new PacketSizeGuard(1 << 30).feed(Uint8Array.from([0x30, 0xff, 0xff, 0xff, 0xff, 0x7f]))).toBe('malformed remaining length');
  });
});

describe('freshUntil', () => {
  it.each([
    ['no statement yet: maxAge after start', null, 1000, 60_000, 61_000],
    ['accepted, expires later than maxAge', { acceptedAt: 5000, expires: 1_000_000 }, 1000, 60_000, 65_000],
    ['accepted, expires sooner', { acceptedAt: 5000, expires: 20_000 }, 1000, 60_000, 20_000],
  ])('%s', (_n, last, startedAt, maxAge, want) => {
    expect(freshUntil(last, startedAt, maxAge)).toBe(want);
  });
});
