import type { AvroReader, AvroType } from "./avro-binary.ts";

type Skipper = (r: AvroReader) => void;
const skippers = new WeakMap<AvroType, Skipper>();

/**
 * A function that moves a reader past one value of `type`, made once per type: walking
 * manifests is mostly skipping statistics, so the dispatch on the type is paid only here.
 */
export function skipperOf(type: AvroType): Skipper {
  const known = skippers.get(type);
  if (known) return known;
  let fn: Skipper;
  switch (type.kind) {
    case "null":
      fn = () => undefined;
      break;
    case "boolean":
      fn = (r) => r.skipBytes(1);
      break;
    case "int":
    case "long":
    case "enum":
      fn = (r) => r.skipVarint();
      break;
    case "float":
      fn = (r) => r.skipBytes(4);
      break;
    case "double":
      fn = (r) => r.skipBytes(8);
      break;
    case "bytes":
    case "string":
      fn = (r) => r.skipBytes(r.readLength());
      break;
    case "fixed": {
      const size = type.size;
      fn = (r) => r.skipBytes(size);
      break;
    }
    case "union":
      fn = (r) => skipperOf(r.branch(type))(r);
      break;
    case "record": {
      // Resolved on first use: a record may contain itself.
      let fields: Skipper[] | undefined;
      fn = (r) => {
        fields ??= type.fields.map((f) => skipperOf(f.type));
        for (const f of fields) f(r);
      };
      break;
    }
    case "array":
    case "map": {
      const isMap = type.kind === "map";
      const inner = isMap ? type.values : type.items;
      let item: Skipper | undefined;
      fn = (r) => {
        item ??= skipperOf(inner);
        for (;;) {
          let count = r.readNumber();
          if (count === 0) return;
          if (count < 0) {
            // A negative count is followed by the block's size in bytes: skip it whole.
            r.skipBytes(r.readLength());
            continue;
          }
          for (; count > 0; count--) {
            if (isMap) r.skipBytes(r.readLength());
            item(r);
          }
        }
      };
      break;
    }
  }
  skippers.set(type, fn);
  return fn;
}
