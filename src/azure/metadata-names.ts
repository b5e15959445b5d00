import { ObjectRefusedError } from "../errors.ts";

/**
 * Azure Blob Storage takes metadata names only as C# identifiers, case-insensitively (its
 * "Naming and referencing containers, blobs, and metadata"), and drops a name whose value is
 * empty; S3 and the lakeFS gateway take any HTTP token (`my-key`, `a.b`) and empty values. So
 * names are mapped, reversibly:
 *
 * - A name of lower-case letters, digits and underscores that starts with a letter, does not
 *   start with `lm_`, and has a non-empty value is stored as it is (`owner`, `my_key`).
 * - Any other is stored as `lm_x_<escaped>` (`lm_e_<escaped>` when its value is empty, stored as
 *   `-`), where <escaped> keeps `a-z` and `0-9` and writes every other UTF-8 byte, `_` and
 *   upper-case letters included, as `_` and two lower-case hex digits: `my-key` is
 *   `lm_x_my_2dkey`, `My_Key` is `lm_x__4dy_5f_4bey`, `lm_a` is `lm_x_lm_5fa`.
 *
 * Only `[a-z0-9_]` is ever stored, so the names survive a store or an HTTP stack that
 * lower-cases them. A stored name that is not exactly what encoding some name gives (a
 * foreign writer's `Lm_X_zz`) is read back as it is, never dropped.
 */

const ESCAPED = /^lm_([xe])_((?:[a-z0-9]|_[0-9a-f]{2})*)$/;
const PLAIN = /^[a-z][a-z0-9_]*$/;
const EMPTY_VALUE = "-";

/** Azure's limit on the metadata of one blob: names and values together, 8 KiB. */
export const MAX_METADATA_BYTES = 8 * 1024;

function escapeName(name: string): string {
  let out = "";
  for (const byte of Buffer.from(name, "utf8")) {
    const c = String.fromCharCode(byte);
    out += /[a-z0-9]/.test(c) ? c : `_${byte.toString(16).padStart(2, "0")}`;
  }
  return out;
}

function unescapeName(escaped: string): string | undefined {
  const bytes: number[] = [];
  for (let i = 0; i < escaped.length; i++) {
    if (escaped[i] === "_") {
      bytes.push(parseInt(escaped.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(escaped.charCodeAt(i));
  }
  const buf = Buffer.from(bytes);
  const text = buf.toString("utf8");
  // Bytes that are no UTF-8 text decode with U+FFFD: they came from no name this module wrote.
  return Buffer.from(text, "utf8").equals(buf) ? text : undefined;
}

/** The stored name and value of one metadata entry. */
export function encodeMetadataEntry(name: string, value: string): [string, string] {
  if (value !== "" && PLAIN.test(name) && !name.startsWith("lm_")) return [name, value];
  return value === ""
    ? [`lm_e_${escapeName(name)}`, EMPTY_VALUE]
    : [`lm_x_${escapeName(name)}`, value];
}

/** The name and value a stored entry stands for (a name this module did not write: as it is). */
export function decodeMetadataEntry(stored: string, value: string): [string, string] {
  const m = ESCAPED.exec(stored);
  if (!m) return [stored, value];
  const name = unescapeName(m[2]!);
  if (name === undefined) return [stored, value];
  const decoded: [string, string] = [name, m[1] === "e" ? "" : value];
  const again = encodeMetadataEntry(...decoded);
  return again[0] === stored && (m[1] === "x" || value === EMPTY_VALUE) ? decoded : [stored, value];
}

/**
 * The metadata to store for an object's user metadata. Refuses the object (ObjectRefusedError,
 * which its export reports) when the mapped entries pass Azure's 8 KiB: nothing is dropped.
 */
export function encodeMetadata(
  metadata: Record<string, string>,
  path: string,
): Record<string, string> {
  const out: Record<string, string> = {};
  let bytes = 0;
  for (const [name, value] of Object.entries(metadata)) {
    // Injective: plain names never start with `lm_`, and escaping is one-to-one.
    const [n, v] = encodeMetadataEntry(name, value);
    out[n] = v;
    bytes += Buffer.byteLength(n) + Buffer.byteLength(v);
  }
  if (bytes > MAX_METADATA_BYTES)
    throw new ObjectRefusedError(
      `${path}: its metadata takes ${bytes} bytes as Azure names and values, more than Azure's 8 KiB per blob`,
    );
  return out;
}

/** The user metadata a stored blob's metadata stands for, names as ObjectMeta has them. */
export function decodeMetadata(stored: Record<string, string> | undefined): Record<string, string> {
  const entries = Object.entries(stored ?? {}).map(([n, v]) => {
    const lower = n.toLowerCase();
    return { lower, value: v, decoded: decodeMetadataEntry(lower, v) };
  });
  const count = new Map<string, number>();
  for (const e of entries) count.set(e.decoded[0], (count.get(e.decoded[0]) ?? 0) + 1);
  const out: Record<string, string> = {};
  for (const e of entries) {
    // Two stored names for one name (someone else added `foo` beside lakefs-mirror's
    // `lm_e_foo`): neither is taken for it, so the blob's metadata never reads as what was
    // written, whichever order the store lists them in.
    if ((count.get(e.decoded[0]) ?? 0) > 1) out[e.lower] = e.value;
    else out[e.decoded[0]] = e.decoded[1];
  }
  return out;
}
