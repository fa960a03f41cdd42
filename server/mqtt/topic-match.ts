// One MQTT filter matcher for the server's buses (the embedded broker's acknowledged handlers, the external
// bus) and the embedded broker's retained index.

/**
 * MQTT filter match ('+' one level, '#' this level and all below, none included). Runs for every
 * message a device sends (issue 13): it walks both strings level by level without splitting them, so
 * it allocates nothing. test/unit/topic-match.test.ts holds it to the split-based definition.
 */
export function topicMatches(filter: string, topic: string): boolean {
  // start of the current level in each string; past the end (length + 1) once the string has no level left
  let f = 0, t = 0;
  for (;;) {
    let fe = filter.indexOf('/', f);
    if (fe < 0) fe = filter.length;
    const fLen = fe - f;
    if (fLen === 1 && filter.charCodeAt(f) === 35 /* # */) return true;
    if (t > topic.length) return false; // the filter has a level the topic lacks
    let te = topic.indexOf('/', t);
    if (te < 0) te = topic.length;
    if (!(fLen === 1 && filter.charCodeAt(f) === 43 /* + */)) {
      if (te - t !== fLen) return false;
      for (let i = 0; i < fLen; i++) if (filter.charCodeAt(f + i) !== topic.charCodeAt(t + i)) return false;
    }
    f = fe + 1;
    t = te + 1;
    if (f > filter.length) return t > topic.length; // the filter ended: the topic must end here too
  }
}
