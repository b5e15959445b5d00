/**
 * A path into a JSON document: object keys, and array indexes as numbers.
 * `["snapshots", 3, "manifest-list"]` is the fourth snapshot's manifest list.
 */
export type JsonPath = readonly (string | number)[];

/** Returns the new value of the string at `path`, or undefined to keep it as it is. */
export type StringReplacer = (path: JsonPath, value: string) => string | undefined;

/** The text is not JSON; `offset` is where the scanner stopped (UTF-16 units). */
export class JsonSyntaxError extends Error {
  readonly offset: number;
  constructor(message: string, offset: number) {
    super(`${message} at offset ${offset}`);
    this.offset = offset;
  }
}

const NUMBER = /-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?/y;
const WHITESPACE = /[ \t\n\r]*/y;

/**
 * Replaces string values of a JSON text in place and keeps every other character as it was.
 * Table metadata holds 64-bit snapshot IDs that `JSON.parse` would round to the nearest double
 * (anything above 2^53), and engines compare the file's bytes with nothing but their own
 * parse: so the document is scanned token by token, numbers are never converted, and only the
 * replaced strings change (re-encoded with JSON.stringify, which escapes just what RFC 8259
 * requires).
 */
export function rewriteJsonStrings(text: string, replace: StringReplacer): string {
  const edits: { start: number; end: number; text: string }[] = [];
  const path: (string | number)[] = [];
  let i = 0;

  const fail = (what: string): never => {
    throw new JsonSyntaxError(what, i);
  };
  const skipWhitespace = (): void => {
    WHITESPACE.lastIndex = i;
    WHITESPACE.exec(text);
    i = WHITESPACE.lastIndex;
  };
  // Returns the end of the string token starting at `i` (a double quote).
  const stringEnd = (): number => {
    let j = i + 1;
    for (;;) {
      const q = text.indexOf('"', j);
      if (q < 0) return fail("unterminated string");
      // A quote preceded by an odd number of backslashes is escaped.
      let backslashes = 0;
      for (let k = q - 1; text.charCodeAt(k) === 0x5c; k--) backslashes++;
      if (backslashes % 2 === 0) return q + 1;
      j = q + 1;
    }
  };
  const readString = (): string => {
    const start = i;
    const end = stringEnd();
    let value: unknown;
    try {
      value = JSON.parse(text.slice(start, end));
    } catch {
      return fail("malformed string");
    }
    i = end;
    return value as string;
  };

  const value = (): void => {
    skipWhitespace();
    const c = text.charCodeAt(i);
    if (c === 0x7b /* { */) {
      i++;
      skipWhitespace();
      if (text.charCodeAt(i) === 0x7d) {
        i++;
        return;
      }
      for (;;) {
        skipWhitespace();
        if (text.charCodeAt(i) !== 0x22) fail("expected a key");
        path.push(readString());
        skipWhitespace();
        if (text.charCodeAt(i) !== 0x3a) fail("expected ':'");
        i++;
        value();
        path.pop();
        skipWhitespace();
        const d = text.charCodeAt(i++);
        if (d === 0x7d) return;
        if (d !== 0x2c) fail("expected ',' or '}'");
      }
    } else if (c === 0x5b /* [ */) {
      i++;
      skipWhitespace();
      if (text.charCodeAt(i) === 0x5d) {
        i++;
        return;
      }
      for (let index = 0; ; index++) {
        path.push(index);
        value();
        path.pop();
        skipWhitespace();
        const d = text.charCodeAt(i++);
        if (d === 0x5d) return;
        if (d !== 0x2c) fail("expected ',' or ']'");
      }
    } else if (c === 0x22) {
      const start = i;
      const s = readString();
      const next = replace(path, s);
      if (next !== undefined && next !== s) {
        edits.push({ start, end: i, text: JSON.stringify(next) });
      }
    } else if (text.startsWith("true", i)) {
      i += 4;
    } else if (text.startsWith("false", i)) {
      i += 5;
    } else if (text.startsWith("null", i)) {
      i += 4;
    } else {
      NUMBER.lastIndex = i;
      if (!NUMBER.test(text)) fail("unexpected character");
      i = NUMBER.lastIndex;
    }
  };

  value();
  skipWhitespace();
  if (i !== text.length) fail("unexpected text after the document");
  if (edits.length === 0) return text;
  let out = "";
  let copied = 0;
  for (const e of edits) {
    out += text.slice(copied, e.start) + e.text;
    copied = e.end;
  }
  return out + text.slice(copied);
}
