package lakefsmirror;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.ByteBuffer;
import java.util.ArrayList;
import java.util.Collections;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.UUID;
import org.apache.iceberg.BaseTable;
import org.apache.iceberg.DataFile;
import org.apache.iceberg.DataFiles;
import org.apache.iceberg.DeleteFile;
import org.apache.iceberg.FileFormat;
import org.apache.iceberg.ManifestFiles;
import org.apache.iceberg.ManifestWriter;
import org.apache.iceberg.Metrics;
import org.apache.iceberg.PartitionSpec;
import org.apache.iceberg.Schema;
import org.apache.iceberg.Snapshot;
import org.apache.iceberg.StaticTableOperations;
import org.apache.iceberg.Table;
import org.apache.iceberg.TableMetadata;
import org.apache.iceberg.data.GenericAppenderFactory;
import org.apache.iceberg.data.GenericRecord;
import org.apache.iceberg.data.IcebergGenerics;
import org.apache.iceberg.data.Record;
import org.apache.iceberg.deletes.BaseDVFileWriter;
import org.apache.iceberg.deletes.PositionDelete;
import org.apache.iceberg.deletes.PositionDeleteWriter;
import org.apache.iceberg.encryption.EncryptedFiles;
import org.apache.iceberg.encryption.EncryptedOutputFile;
import org.apache.iceberg.io.CloseableIterable;
import org.apache.iceberg.io.DataWriter;
import org.apache.iceberg.io.DeleteWriteResult;
import org.apache.iceberg.io.FileIO;
import org.apache.iceberg.io.OutputFileFactory;
import org.apache.iceberg.types.Conversions;
import org.apache.iceberg.types.Types;

/**
 * Writes and reads Iceberg tables with Iceberg's own Java libraries, for the path-rewriting
 * tests: tables with position-delete files (format 2) or deletion vectors (format 3), which
 * pyiceberg does not write, and a second reader of the mirror. Files go to a local directory
 * that stands for a URI prefix (LocalPrefixFileIO); the test moves them to lakeFS and back.
 *
 * <pre>
 *   write LOCAL_ROOT URI_PREFIX FORMAT_VERSION   prints {"metadata": ...}
 *   read  LOCAL_ROOT URI_PREFIX METADATA_URI      prints {"snapshots": {id: rows}, "current": rows}
 *   manifest LOCAL_ROOT URI_PREFIX FILES COLUMNS  one manifest of FILES data files with stats for
 *                                                 COLUMNS columns (the rewrite benchmark's input)
 * </pre>
 */
public final class IcebergTables {
  private static final Schema SCHEMA =
      new Schema(
          Types.NestedField.optional(1, "id", Types.LongType.get()),
          Types.NestedField.optional(2, "name", Types.StringType.get()));

  public static void main(String[] args) throws IOException {
    Map<String, String> io = Map.of("local.root", args[1], "local.prefix", args[2]);
    if (args[0].equals("write")) {
      System.out.print("{\"metadata\": " + quote(write(io, args[2], Integer.parseInt(args[3]))) + "}");
    } else if (args[0].equals("read")) {
      System.out.print(read(io, args[3]));
    } else if (args[0].equals("manifest")) {
      System.out.print(manifest(io, args[2], Integer.parseInt(args[3]), Integer.parseInt(args[4])));
    } else {
      throw new IllegalArgumentException("unknown command " + args[0]);
    }
  }

  private static String write(Map<String, String> io, String prefix, int formatVersion)
      throws IOException {
    FileIO fileIO = new LocalPrefixFileIO();
    fileIO.initialize(io);
    LocalTableOperations ops = new LocalTableOperations(fileIO);
    ops.commit(
        null,
        TableMetadata.newTableMetadata(
            SCHEMA,
            PartitionSpec.unpartitioned(),
            prefix + "wh/ns/t",
            // Zstandard Parquet (the default of Iceberg's catalogs since 1.4) for data and
            // delete files: the rewriter reads and writes that codec too.
            Map.of(
                "format-version",
                Integer.toString(formatVersion),
                "write.parquet.compression-codec",
                "zstd")));
    Table table = new BaseTable(ops, "t");

    DataFile first = dataFile(table, "first", 0, 10);
    DataFile second = dataFile(table, "second", 10, 10);
    table.newAppend().appendFile(first).appendFile(second).commit();
    deletes(table, formatVersion, first.location(), new long[] {1, 3, 8});
    table.refresh();
    table.newAppend().appendFile(dataFile(table, "third", 20, 5)).commit();
    deletes(table, formatVersion, second.location(), new long[] {0, 9});
    table.refresh();
    return ((BaseTable) table).operations().current().metadataFileLocation();
  }

  private static DataFile dataFile(Table table, String name, long start, int n) throws IOException {
    GenericAppenderFactory factory = new GenericAppenderFactory(table.schema(), table.spec());
    factory.setAll(table.properties());
    EncryptedOutputFile out =
        EncryptedFiles.plainAsEncryptedOutput(
            table.io().newOutputFile(table.locationProvider().newDataLocation(name + ".parquet")));
    DataWriter<Record> writer = factory.newDataWriter(out, FileFormat.PARQUET, null);
    try (writer) {
      for (long i = start; i < start + n; i++) {
        GenericRecord r = GenericRecord.create(table.schema());
        r.setField("id", i);
        r.setField("name", "row " + i + " \u00fc\ud83d\ude00");
        writer.write(r);
      }
    }
    return writer.toDataFile();
  }

  /** Format 2: a Parquet position-delete file; format 3: a Puffin deletion vector. */
  private static void deletes(Table table, int formatVersion, String path, long[] positions)
      throws IOException {
    List<DeleteFile> files = new ArrayList<>();
    if (formatVersion >= 3) {
      OutputFileFactory factory =
          OutputFileFactory.builderFor(table, 1, System.nanoTime()).format(FileFormat.PUFFIN).build();
      BaseDVFileWriter writer = new BaseDVFileWriter(factory, p -> null);
      for (long pos : positions) writer.delete(path, pos, table.spec(), null);
      writer.close();
      DeleteWriteResult result = writer.result();
      files.addAll(result.deleteFiles());
    } else {
      GenericAppenderFactory factory = new GenericAppenderFactory(table.schema(), table.spec());
    factory.setAll(table.properties());
      EncryptedOutputFile out =
          EncryptedFiles.plainAsEncryptedOutput(
              table.io().newOutputFile(table.locationProvider().newDataLocation("deletes-" + System.nanoTime() + ".parquet")));
      PositionDeleteWriter<Record> writer = factory.newPosDeleteWriter(out, FileFormat.PARQUET, null);
      try (writer) {
        for (long pos : positions) writer.write(PositionDelete.<Record>create().set(path, pos, null));
      }
      files.add(writer.toDeleteFile());
    }
    var delta = table.newRowDelta();
    files.forEach(delta::addDeletes);
    delta.commit();
  }

  private static String read(Map<String, String> io, String metadata) throws IOException {
    FileIO fileIO = new LocalPrefixFileIO();
    fileIO.initialize(io);
    Table table = new BaseTable(new StaticTableOperations(metadata, fileIO), "t");
    StringBuilder out = new StringBuilder("{\"snapshots\": {");
    String sep = "";
    for (Snapshot s : table.snapshots()) {
      out.append(sep).append(quote(Long.toString(s.snapshotId()))).append(": ");
      out.append(rows(IcebergGenerics.read(table).useSnapshot(s.snapshotId()).build()));
      sep = ", ";
    }
    out.append("}, \"current\": ").append(rows(IcebergGenerics.read(table).build())).append("}");
    return out.toString();
  }

  private static String manifest(Map<String, String> io, String prefix, int files, int columns)
      throws IOException {
    FileIO fileIO = new LocalPrefixFileIO();
    fileIO.initialize(io);
    List<Types.NestedField> fields = new ArrayList<>();
    for (int c = 1; c <= columns; c++) {
      fields.add(Types.NestedField.optional(c, "c" + c, Types.LongType.get()));
    }
    Schema schema = new Schema(fields);
    PartitionSpec spec = PartitionSpec.builderFor(schema).identity("c1").build();
    String location = prefix + "wh/ns/big/metadata/" + UUID.randomUUID() + "-m0.avro";
    ManifestWriter<DataFile> writer = ManifestFiles.write(2, spec, fileIO.newOutputFile(location), 1L);
    try (writer) {
      for (int i = 0; i < files; i++) {
        Map<Integer, Long> sizes = new HashMap<>();
        Map<Integer, Long> counts = new HashMap<>();
        Map<Integer, Long> nulls = new HashMap<>();
        Map<Integer, ByteBuffer> lower = new HashMap<>();
        Map<Integer, ByteBuffer> upper = new HashMap<>();
        for (int c = 1; c <= columns; c++) {
          sizes.put(c, 4000L + i);
          counts.put(c, 1000L);
          nulls.put(c, (long) (i % 7));
          lower.put(c, Conversions.toByteBuffer(Types.LongType.get(), (long) i * c));
          upper.put(c, Conversions.toByteBuffer(Types.LongType.get(), (long) i * c + 999));
        }
        writer.add(
            DataFiles.builder(spec)
                .withPath(prefix + "wh/ns/big/data/c1=" + (i % 100) + "/" + UUID.randomUUID() + "-" + i + ".parquet")
                .withFormat(FileFormat.PARQUET)
                .withPartitionPath("c1=" + (i % 100))
                .withFileSizeInBytes(10_000_000L + i)
                .withMetrics(new Metrics(1000L, sizes, counts, nulls, null, lower, upper))
                .withSplitOffsets(List.of(4L))
                .build());
      }
    }
    return "{\"manifest\": " + quote(location) + ", \"length\": " + writer.length() + "}";
  }

  private static String rows(CloseableIterable<Record> records) {
    List<String> rows = new ArrayList<>();
    try (records) {
      for (Record r : records) rows.add(quote(r.getField("id") + "|" + r.getField("name")));
    } catch (IOException e) {
      throw new UncheckedIOException(e);
    }
    Collections.sort(rows);
    return "[" + String.join(", ", rows) + "]";
  }

  private static String quote(String s) {
    StringBuilder b = new StringBuilder("\"");
    for (char c : s.toCharArray()) {
      if (c == '"' || c == '\\') b.append('\\').append(c);
      else if (c < 0x20) b.append(String.format("\\u%04x", (int) c));
      else b.append(c);
    }
    return b.append('"').toString();
  }

  private IcebergTables() {}
}
