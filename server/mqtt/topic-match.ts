// One MQTT filter matcher for the server's buses (the embedded broker's acknowledged handlers, the external
// bus) and the embedded broker's retained index.

/** MQTT filter match ('+' one level, '#' the rest, zero or more levels) */
export function topicMatches(filter: string, topic: string): boolean {
  return levelsMatch(filter.split('/'), topic);
}

/** the same match over a filter split once into levels (a filter tested against many topics) */
export function levelsMatch(filter: readonly string[], topic: string): boolean {
  const t = topic.split('/');
  for (let i = 0; i < filter.length; i++) {
    if (filter[i] === '#') return true;
    if (i >= t.length) return false;
    if (filter[i] !== '+' && filter[i] !== t[i]) return false;
  }
  return filter.length === t.length;
}
