// One MQTT filter matcher for the server's buses (the embedded broker's acknowledged handlers, the external bus).

/** MQTT filter match ('+' one level, '#' the rest) */
export function topicMatches(filter: string, topic: string): boolean {
  const f = filter.split('/');
  const t = topic.split('/');
  for (let i = 0; i < f.length; i++) {
    if (f[i] === '#') return true;
    if (i >= t.length) return false;
    if (f[i] !== '+' && f[i] !== t[i]) return false;
  }
  return f.length === t.length;
}
