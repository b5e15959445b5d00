import { AvroWriter } from "../../../src/iceberg/avro-binary.ts";
import { writeContainer } from "../../../src/iceberg/avro-container.ts";
import type { AvroCodec } from "../../../src/iceberg/avro-container.ts";

/** An Avro object container file of one block: `records` (`count` of them) under `schema`. */
export function avroContainer(
  schema: unknown,
  records: Uint8Array,
  count: number,
  codec: AvroCodec = "null",
): Uint8Array {
  const h = new AvroWriter();
  h.raw(Buffer.from("Obj\x01", "latin1"));
  h.long(2);
  h.string("avro.schema");
  h.string(JSON.stringify(schema));
  h.string("avro.codec");
  h.string(codec);
  h.long(0);
  const sync = Buffer.alloc(16, 7);
  h.raw(sync);
  return writeContainer(h.finish(), codec, sync, [{ count, data: records }]);
}
