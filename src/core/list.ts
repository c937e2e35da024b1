/**
 * Short lists and maps of sets: the small collections every connection and room holds.
 */

/**
 * Removes `item` from a short list (a user's connections, a connection's rooms); true if it was
 * there. Such lists are arrays, not Sets: JSC spends about 260 bytes on a Set of one and 60 on
 * an array, and every idle connection holds several (issue #8: memory per connection).
 */
export function removeItem<T>(list: T[], item: T): boolean {
  const at = list.indexOf(item);
  if (at === -1) return false;
  list.splice(at, 1);
  return true;
}

/** Adds `value` to the set at `key`, making the set when it is the first. */
export function addTo<T>(map: Map<string, Set<T>>, key: string, value: T): void {
  let set = map.get(key);
  if (!set) map.set(key, (set = new Set()));
  set.add(value);
}

/** Removes `value` from the set at `key`, dropping the set when it empties. */
export function removeFrom<T>(map: Map<string, Set<T>>, key: string, value: T): void {
  const set = map.get(key);
  if (set?.delete(value) && set.size === 0) map.delete(key);
}
