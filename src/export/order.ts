/**
 * lakeFS lists and diffs paths in the byte order of their UTF-8 encoding, as S3 lists keys.
 * UTF-8 preserves code point order, so comparing code points gives the same order without
 * encoding; JavaScript's own `<` compares UTF-16 units, which differs above U+FFFF.
 */
export function compareUtf8(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    // Different units: a surrogate (a code point above U+FFFF) sorts after every BMP unit.
    const xs = x >= 0xd800 && x <= 0xdfff;
    const ys = y >= 0xd800 && y <= 0xdfff;
    if (xs !== ys) return xs ? 1 : -1;
    return x < y ? -1 : 1;
  }
  return a.length - b.length;
}

/** The items of paginated sources, one at a time. */
export async function* flatten<T>(pages: AsyncIterable<T[]>): AsyncGenerator<T> {
  for await (const page of pages) yield* page;
}

/**
 * Merges sorted streams into one sorted stream of groups: each group holds, for one key, the
 * item of every stream that has it (at most one per stream; each stream is strictly sorted).
 */
export async function* mergeSorted<T>(
  streams: (AsyncIterable<T> | Iterable<T>)[],
  keyOf: (item: T) => string,
): AsyncGenerator<{ key: string; items: (T | undefined)[] }> {
  const its: AsyncIterator<T>[] = streams.map((s) => {
    if (Symbol.asyncIterator in s) return s[Symbol.asyncIterator]();
    const it = s[Symbol.iterator]();
    return { next: () => Promise.resolve(it.next()) };
  });
  const heads = await Promise.all(its.map((it) => it.next()));
  for (;;) {
    let key: string | undefined;
    for (const h of heads) {
      if (h.done) continue;
      const k = keyOf(h.value);
      if (key === undefined || compareUtf8(k, key) < 0) key = k;
    }
    if (key === undefined) return;
    const items: (T | undefined)[] = heads.map((h) =>
      !h.done && keyOf(h.value) === key ? h.value : undefined,
    );
    yield { key, items };
    await Promise.all(
      items.map(async (item, i) => {
        if (item !== undefined) heads[i] = await its[i]!.next();
      }),
    );
  }
}
