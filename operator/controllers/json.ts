// Comparing JSON as the API server returns it: containment (server defaults aside), equality whatever the key
// order, a canonical text for digests.

/** Does `actual` hold every value `desired` sets? (Extra fields are the API server's defaults.) */
export function contains(actual: unknown, desired: unknown): boolean {
  if (desired === null || typeof desired !== 'object') {
    return actual === desired || (actual !== undefined && actual !== null && typeof actual !== 'object' && String(actual) === String(desired));
  }
  if (Array.isArray(desired)) {
    return Array.isArray(actual) && actual.length === desired.length && desired.every((d, i) => contains(actual[i], d));
  }
  if (actual === null || typeof actual !== 'object') return false;
  return Object.entries(desired).every(([k, v]) => contains((actual as Record<string, unknown>)[k], v));
}

/** The same JSON, whatever the order of keys (undefined values count as absent). */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (a === null || b === null || typeof a !== 'object' || typeof b !== 'object') return false;
  if (Array.isArray(a) || Array.isArray(b)) {
    return Array.isArray(a) && Array.isArray(b) && a.length === b.length && a.every((x, i) => sameJson(x, b[i]));
  }
  const x = a as Record<string, unknown>;
  const y = b as Record<string, unknown>;
  let n = 0;
  for (const k in x) {
    if (x[k] === undefined) continue;
    if (!sameJson(x[k], y[k])) return false;
    n++;
  }
  for (const k in y) if (y[k] !== undefined) n--;
  return n === 0;
}

/** JSON with sorted keys and no undefined values: the API server returns maps sorted, we build them in any order. */
export function canonical(value: unknown): string {
  return JSON.stringify(value, (_k, v) => (v && typeof v === 'object' && !Array.isArray(v)
    ? Object.fromEntries(Object.keys(v).sort().filter((k) => v[k] !== undefined).map((k) => [k, v[k]]))
    : v));
}
