import { skipperOf } from "./avro-skip.ts";

/*
 * Avro's binary encoding (Avro 1.11 specification, "Binary Encoding") as far as the rewriter
 * needs it: it walks values by their writer schema to find where each one starts and ends, and
 * decodes only the few it changes. Every other value is copied as the bytes it was, so nothing
 * that is not rewritten can change, 64-bit longs included (the ones it reads are BigInts).
 */

export type AvroType =
  | { kind: "null" | "boolean" | "int" | "long" | "float" | "double" | "bytes" | "string" }
  | { kind: "fixed"; name: string; size: number }
  | { kind: "enum"; name: string }
  | { kind: "array"; items: AvroType }
  | { kind: "map"; values: AvroType }
  | { kind: "union"; branches: AvroType[] }
  | { kind: "record"; name: string; fields: AvroField[] };

export interface AvroField {
  name: string;
  type: AvroType;
}

/** The schema is not one this reader understands; the message says which part. */
export class AvroSchemaError extends Error {}

/** The bytes do not decode under the schema (truncated, or a length out of range). */
export class AvroDataError extends Error {}

const PRIMITIVES = new Set([
  "null",
  "boolean",
  "int",
  "long",
  "float",
  "double",
  "bytes",
  "string",
]);

/**
 * Compiles a parsed Avro schema (the header's `avro.schema`). Named types are resolved by full
 * name with namespaces inherited from the enclosing type; a record may refer to itself.
 */
export function compileSchema(schema: unknown): AvroType {
  const named = new Map<string, AvroType>();
  const fullName = (name: string, namespace: string | undefined): string =>
    name.includes(".") || !namespace ? name : `${namespace}.${name}`;

  const compile = (s: unknown, namespace: string | undefined): AvroType => {
    if (typeof s === "string") {
      if (PRIMITIVES.has(s)) return { kind: s as "null" };
      const t = named.get(fullName(s, namespace)) ?? named.get(s);
      if (!t) throw new AvroSchemaError(`unknown type name "${s}"`);
      return t;
    }
    if (Array.isArray(s)) return { kind: "union", branches: s.map((b) => compile(b, namespace)) };
    if (typeof s !== "object" || s === null) {
      throw new AvroSchemaError(`a schema must be a name, a union or an object`);
    }
    const o = s as Record<string, unknown>;
    const type = o["type"];
    if (typeof type === "string" && PRIMITIVES.has(type)) return { kind: type as "null" };
    const ns = typeof o["namespace"] === "string" ? o["namespace"] : namespace;
    const name = typeof o["name"] === "string" ? fullName(o["name"], ns) : "";
    // A named type's own name sets the namespace of what it contains.
    const inner = name.includes(".") ? name.slice(0, name.lastIndexOf(".")) : ns;
    switch (type) {
      case "record":
      case "error": {
        if (!Array.isArray(o["fields"])) throw new AvroSchemaError(`record ${name} has no fields`);
        const rec: AvroType & { kind: "record" } = { kind: "record", name, fields: [] };
        named.set(name, rec);
        for (const f of o["fields"] as unknown[]) {
          const field = f as Record<string, unknown>;
          if (typeof field["name"] !== "string") {
            throw new AvroSchemaError(`record ${name} has a field without a name`);
          }
          rec.fields.push({ name: field["name"], type: compile(field["type"], inner) });
        }
        return rec;
      }
      case "enum": {
        const t: AvroType = { kind: "enum", name };
        named.set(name, t);
        return t;
      }
      case "fixed": {
        const size = o["size"];
        if (typeof size !== "number" || !Number.isInteger(size) || size < 0) {
          throw new AvroSchemaError(`fixed ${name} has no valid size`);
        }
        const t: AvroType = { kind: "fixed", name, size };
        named.set(name, t);
        return t;
      }
      case "array":
        return { kind: "array", items: compile(o["items"], ns) };
      case "map":
        return { kind: "map", values: compile(o["values"], ns) };
      default:
        // `{"type": {...}}` wraps another schema.
        if (typeof type === "object" && type !== null) return compile(type, ns);
        throw new AvroSchemaError(`unknown type ${JSON.stringify(type)}`);
    }
  };
  return compile(schema, undefined);
}

/** A cursor over Avro binary data. */
export class AvroReader {
  readonly buf: Uint8Array;
  readonly end: number;
  pos: number;
  constructor(buf: Uint8Array, pos = 0, end = buf.length) {
    this.buf = buf;
    this.pos = pos;
    this.end = end;
  }

  #need(n: number): void {
    if (this.pos + n > this.end) throw new AvroDataError(`truncated Avro data at byte ${this.pos}`);
  }

  /** A zig-zag varint long as a BigInt (exact over the whole 64-bit range). */
  readLong(): bigint {
    let result = 0n;
    let shift = 0n;
    for (let i = 0; i < 10; i++) {
      this.#need(1);
      const b = this.buf[this.pos++]!;
      result |= BigInt(b & 0x7f) << shift;
      if ((b & 0x80) === 0) return (result >> 1n) ^ -(result & 1n);
      shift += 7n;
    }
    throw new AvroDataError(`a varint longer than 10 bytes at byte ${this.pos}`);
  }

  /** A long that must fit a JavaScript number (lengths, counts, indexes, ints). */
  readNumber(): number {
    let result = 0;
    let scale = 1;
    for (let i = 0; i < 10; i++) {
      this.#need(1);
      const b = this.buf[this.pos++]!;
      result += (b & 0x7f) * scale;
      if ((b & 0x80) === 0) {
        if (result > Number.MAX_SAFE_INTEGER) {
          throw new AvroDataError(`a count or length beyond 2^53 at byte ${this.pos}`);
        }
        // Zig-zag: even is positive, odd is negative.
        return result % 2 === 0 ? result / 2 : -(result + 1) / 2;
      }
      scale *= 128;
    }
    throw new AvroDataError(`a varint longer than 10 bytes at byte ${this.pos}`);
  }

  readLength(): number {
    const n = this.readNumber();
    if (n < 0) throw new AvroDataError(`a negative length at byte ${this.pos}`);
    return n;
  }

  readBytes(): Uint8Array {
    const n = this.readLength();
    this.#need(n);
    const out = this.buf.subarray(this.pos, this.pos + n);
    this.pos += n;
    return out;
  }

  readString(): string {
    return Buffer.from(this.readBytes()).toString("utf8");
  }

  skipVarint(): void {
    for (let i = 0; i < 10; i++) {
      this.#need(1);
      if ((this.buf[this.pos++]! & 0x80) === 0) return;
    }
    throw new AvroDataError(`a varint longer than 10 bytes at byte ${this.pos}`);
  }

  skipBytes(n: number): void {
    this.#need(n);
    this.pos += n;
  }

  /** Moves past one value of `type`. */
  skip(type: AvroType): void {
    skipperOf(type)(this);
  }

  /** Reads a union's branch index and returns the branch's type. */
  branch(type: AvroType & { kind: "union" }): AvroType {
    const index = this.readNumber();
    const b = type.branches[index];
    if (!b) throw new AvroDataError(`union branch ${index} does not exist at byte ${this.pos}`);
    return b;
  }

  /** The [start, end) of each field of a record that starts here; leaves the cursor after it. */
  fieldSpans(type: AvroType & { kind: "record" }): [number, number][] {
    const spans: [number, number][] = [];
    for (const f of type.fields) {
      const start = this.pos;
      this.skip(f.type);
      spans.push([start, this.pos]);
    }
    return spans;
  }
}

/** Accumulates Avro binary output. */
export class AvroWriter {
  readonly #chunks: Uint8Array[] = [];
  #pending: number[] = [];
  length = 0;

  #flushPending(): void {
    if (this.#pending.length > 0) {
      this.#chunks.push(Uint8Array.from(this.#pending));
      this.#pending = [];
    }
  }

  raw(bytes: Uint8Array): void {
    this.#flushPending();
    this.#chunks.push(bytes);
    this.length += bytes.length;
  }

  long(value: bigint | number): void {
    const v = BigInt(value);
    // Zig-zag over 64 bits, then 7 bits per byte, low first.
    let z = BigInt.asUintN(64, (v << 1n) ^ (v >> 63n));
    do {
      const byte = Number(z & 0x7fn);
      z >>= 7n;
      this.#pending.push(z === 0n ? byte : byte | 0x80);
      this.length++;
    } while (z !== 0n);
  }

  bytes(value: Uint8Array): void {
    this.long(value.length);
    this.raw(value);
  }

  string(value: string): void {
    this.bytes(Buffer.from(value, "utf8"));
  }

  finish(): Uint8Array {
    this.#flushPending();
    return Buffer.concat(this.#chunks, this.length);
  }
}
