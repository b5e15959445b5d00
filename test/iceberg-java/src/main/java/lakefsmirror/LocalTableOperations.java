package lakefsmirror;

import java.util.UUID;
import org.apache.iceberg.LocationProviders;
import org.apache.iceberg.TableMetadata;
import org.apache.iceberg.TableMetadataParser;
import org.apache.iceberg.TableOperations;
import org.apache.iceberg.io.FileIO;
import org.apache.iceberg.io.LocationProvider;

/**
 * The smallest catalog: one table whose metadata files are written through a FileIO, each
 * commit a new `NNNNN-uuid.metadata.json` read back so the next one logs it in metadata-log.
 */
final class LocalTableOperations implements TableOperations {
  private final FileIO io;
  private TableMetadata current;
  private int version;

  LocalTableOperations(FileIO io) {
    this.io = io;
  }

  @Override
  public TableMetadata current() {
    return current;
  }

  @Override
  public TableMetadata refresh() {
    return current;
  }

  @Override
  public void commit(TableMetadata base, TableMetadata metadata) {
    if (base != current) throw new IllegalStateException("stale commit");
    String location =
        metadata.location()
            + "/metadata/"
            + String.format("%05d-%s.metadata.json", ++version, UUID.randomUUID());
    TableMetadataParser.write(metadata, io.newOutputFile(location));
    current = TableMetadataParser.read(io, location);
  }

  @Override
  public FileIO io() {
    return io;
  }

  @Override
  public String metadataFileLocation(String fileName) {
    return current.location() + "/metadata/" + fileName;
  }

  @Override
  public LocationProvider locationProvider() {
    return LocationProviders.locationsFor(current.location(), current.properties());
  }
}
