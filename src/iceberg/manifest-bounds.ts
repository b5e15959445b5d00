import { AvroReader, AvroWriter } from "./avro-binary.ts";
import type { AvroType } from "./avro-binary.ts";
import type { PathMapper } from "./path-map.ts";

// Iceberg's reserved field ID of a position-delete file's `file_path` column (Iceberg table
// specification, "Reserved Field IDs"): its lower and upper bounds in a manifest are paths.
const DELETE_FILE_PATH_ID = 2147483546;

type Record = AvroType & { kind: "record" };
type Edit = [start: number, end: number, bytes: Uint8Array];

/** The lower/upper bounds of a position-delete file's `file_path` column, mapped or dropped. */
export function boundEdits(
  type: Record,
  buf: Uint8Array,
  spans: [number, number][],
  mapper: PathMapper,
): Edit[] {
  const found: { at: number; map: KeyValueMap }[] = [];
  for (const name of ["lower_bounds", "upper_bounds"]) {
    const at = type.fields.findIndex((f) => f.name === name);
    if (at < 0) continue;
    const map = readKeyValueMap(type.fields[at]!.type, buf, spans[at]!);
    if (map?.values.has(DELETE_FILE_PATH_ID)) found.push({ at, map });
  }
  if (found.length === 0) return [];
  const bounds = found.map((f) =>
    Buffer.from(f.map.values.get(DELETE_FILE_PATH_ID)!).toString("utf8"),
  );
  const prefixes = bounds.map((b) => {
    const path = mapper.repositoryPath(b);
    return path === undefined ? undefined : b.slice(0, b.length - path.length);
  });
  const keep = prefixes.every((p) => p !== undefined && p === prefixes[0]);
  return found.map((f, i) => {
    if (keep)
      f.map.values.set(DELETE_FILE_PATH_ID, Buffer.from(mapper.tryMap(bounds[i]!)!, "utf8"));
    else f.map.values.delete(DELETE_FILE_PATH_ID);
    return [...spans[f.at]!, encodeKeyValueMap(f.map)];
  });
}

interface KeyValueMap {
  /** The union branch of the non-null value, or -1 when the field is not a union. */
  branch: number;
  values: Map<number, Uint8Array>;
}

/**
 * Iceberg writes maps with int keys as Avro arrays of `{key, value}` records (Iceberg spec,
 * "Avro": maps with non-string keys). Returns undefined for null or any other shape.
 */
function readKeyValueMap(
  type: AvroType,
  buf: Uint8Array,
  [s, e]: [number, number],
): KeyValueMap | undefined {
  const r = new AvroReader(buf, s, e);
  let branch = -1;
  if (type.kind === "union") {
    branch = r.readNumber();
    type = type.branches[branch]!;
  }
  if (type.kind !== "array" || type.items.kind !== "record") return undefined;
  const item = type.items;
  if (
    item.fields.length !== 2 ||
    item.fields[0]!.type.kind !== "int" ||
    item.fields[1]!.type.kind !== "bytes"
  ) {
    return undefined;
  }
  const values = new Map<number, Uint8Array>();
  for (;;) {
    let count = r.readNumber();
    if (count === 0) break;
    if (count < 0) {
      count = -count;
      r.readLength();
    }
    for (; count > 0; count--) values.set(r.readNumber(), r.readBytes());
  }
  return { branch, values };
}

function encodeKeyValueMap(map: KeyValueMap): Uint8Array {
  const w = new AvroWriter();
  if (map.branch >= 0) w.long(map.branch);
  if (map.values.size > 0) {
    w.long(map.values.size);
    for (const [k, v] of map.values) {
      w.long(k);
      w.bytes(v);
    }
  }
  w.long(0);
  return w.finish();
}
