import { parseLocation } from "./destination/schemes.ts";
/**
 * Whether two mirrors' destination templates can resolve to one destination, or to one inside
 * the other. lakeFS repository IDs match `^[a-z0-9][a-z0-9-]{2,62}$` and branch IDs
 * `^\w[-\w]*$` (ASCII word characters and `-`), so neither ever holds a `/`: a placeholder
 * stays inside one path segment. A mirror's `{repository}` is its own repository; its
 * `{branch}` is any branch name its globs match. Each template is turned into a small automaton
 * over the resolved `bucket/prefix/` strings, and two automata meet when some string of one is a
 * string of the other or a prefix of one (ending in `/`, so a whole segment).
 *
 * Exact when `{branch}` occurs at most once in the part compared; with repeats, each occurrence
 * is taken on its own and the check can only be stricter than needed. The rule that a branch
 * name does not start with `-` is left out, also only making it stricter.
 */

/** What a transition reads: one given character, or any character of a branch name. */
type Label = { char: string } | { branch: true };

interface Nfa {
  /** Transitions by state; `label` undefined is an epsilon move. */
  edges: { label?: Label; to: number }[][];
  accept: number;
}

const BRANCH_CHAR = /^[A-Za-z0-9_-]$/;

export interface MirrorTemplate {
  repository: string;
  branches: readonly string[];
  /** `bucket/prefix/` with `{repository}` and `{branch}` placeholders, normalized. */
  template: string;
}

/** Splits `{repository}` and `{branch}` out of a template's text. */
function tokens(m: MirrorTemplate): (string | { branch: true })[] {
  const out: (string | { branch: true })[] = [];
  for (const part of m.template.replaceAll("{repository}", m.repository).split(/(\{branch\})/)) {
    if (part === "{branch}") out.push({ branch: true });
    else out.push(...Array.from(part));
  }
  return out;
}

/** The globs that can match a branch name at all (a glob with `.` or `/` matches none). */
function liveGlobs(branches: readonly string[]): string[] {
  return branches.filter((g) =>
    Array.from(g).every((c) => c === "*" || c === "?" || BRANCH_CHAR.test(c)),
  );
}

function build(m: MirrorTemplate): Nfa | undefined {
  const globs = liveGlobs(m.branches);
  if (globs.length === 0) return undefined;
  const edges: Nfa["edges"] = [[]];
  const add = () => edges.push([]) - 1;
  let at = 0;
  for (const t of tokens(m)) {
    if (typeof t === "string") {
      const next = add();
      edges[at]!.push({ label: { char: t }, to: next });
      at = next;
      continue;
    }
    const join = add();
    for (const glob of globs) {
      let g = at;
      // No branch name is empty: a glob of stars alone matches one character or more.
      const atoms = /^\*+$/.test(glob) ? "?*" : glob;
      for (const c of Array.from(atoms)) {
        if (c === "*") {
          const loop = add();
          edges[g]!.push({ to: loop });
          edges[loop]!.push({ label: { branch: true }, to: loop });
          g = loop;
        } else {
          const next = add();
          edges[g]!.push({ label: c === "?" ? { branch: true } : { char: c }, to: next });
          g = next;
        }
      }
      edges[g]!.push({ to: join });
    }
    at = join;
  }
  return { edges, accept: at };
}

/** The character both labels read, if any (a witness for the message). */
function meet(a: Label, b: Label): string | undefined {
  if ("char" in a && "char" in b) return a.char === b.char ? a.char : undefined;
  if ("char" in a) return BRANCH_CHAR.test(a.char) ? a.char : undefined;
  if ("char" in b) return BRANCH_CHAR.test(b.char) ? b.char : undefined;
  return "x";
}

/** The shortest string from `from` to acceptance in one automaton. */
function completion(n: Nfa, from: number): string {
  const seen = new Map<number, string>([[from, ""]]);
  const queue = [from];
  while (queue.length) {
    const q = queue.shift()!;
    const s = seen.get(q)!;
    if (q === n.accept) return s;
    for (const e of n.edges[q]!) {
      if (seen.has(e.to)) continue;
      seen.set(e.to, s + (e.label ? ("char" in e.label ? e.label.char : "x") : ""));
      queue.push(e.to);
    }
  }
  return "";
}

/**
 * A string `outer` resolves to that is, or starts, a string `inner` resolves to: both
 * witnesses, or undefined when there is none.
 */
function enclosing(outer: Nfa, inner: Nfa): { outer: string; inner: string } | undefined {
  const key = (a: number, b: number) => a * inner.edges.length + b;
  const seen = new Map<number, string>([[key(0, 0), ""]]);
  const queue: [number, number][] = [[0, 0]];
  while (queue.length) {
    const [a, b] = queue.shift()!;
    const s = seen.get(key(a, b))!;
    if (a === outer.accept) return { outer: s, inner: s + completion(inner, b) };
    const step = (na: number, nb: number, c: string) => {
      if (seen.has(key(na, nb))) return;
      seen.set(key(na, nb), s + c);
      queue.push([na, nb]);
    };
    for (const e of outer.edges[a]!) if (!e.label) step(e.to, b, "");
    for (const e of inner.edges[b]!) if (!e.label) step(a, e.to, "");
    for (const ea of outer.edges[a]!) {
      if (!ea.label) continue;
      for (const eb of inner.edges[b]!) {
        if (!eb.label) continue;
        const c = meet(ea.label, eb.label);
        if (c !== undefined) step(ea.to, eb.to, c);
      }
    }
  }
  return undefined;
}

/**
 * Destinations the two mirrors can resolve to that are equal or nested, as `bucket/prefix/`
 * strings, with which of the two encloses the other; undefined when they never meet.
 */
export function destinationsMeet(
  a: MirrorTemplate,
  b: MirrorTemplate,
): { outer: string; inner: string; outerIs: "a" | "b" } | undefined {
  const na = build(a);
  const nb = build(b);
  if (!na || !nb) return undefined;
  const ab = enclosing(na, nb);
  if (ab) return { ...ab, outerIs: "a" };
  const ba = enclosing(nb, na);
  return ba ? { ...ba, outerIs: "b" } : undefined;
}

/** Stand-ins for the placeholders while a template is parsed as a destination URI. */
const SLOTS: [string, string][] = [
  ["{repository}", "lmrepositoryslotx"],
  ["{branch}", "lmbranchslotx"],
];

/**
 * `scheme://container/prefix/` of a destination template in its canonical form, placeholders
 * kept: every URI form of a store names one place (`s3a://` and `s3://`; Azure's https, abfss
 * and wasbs forms), and two stores never meet.
 */
export function templateOf(destination: string): string {
  let uri = destination;
  for (const [placeholder, slot] of SLOTS) uri = uri.replaceAll(placeholder, slot);
  const loc = parseLocation(uri);
  let text = `${loc.scheme}://${loc.container}/${loc.prefix}`;
  for (const [placeholder, slot] of SLOTS) text = text.replaceAll(slot, placeholder);
  return text;
}
