package lakefsmirror;

import java.io.File;
import java.util.Map;
import org.apache.iceberg.Files;
import org.apache.iceberg.io.FileIO;
import org.apache.iceberg.io.InputFile;
import org.apache.iceberg.io.OutputFile;
import org.apache.iceberg.io.PositionOutputStream;
import org.apache.iceberg.io.SeekableInputStream;

/**
 * A FileIO over a local directory that stands for a URI prefix: `local.prefix` + p is the file
 * `local.root`/p, and every location Iceberg records is the URI, never the local path. The
 * tests upload the directory to lakeFS (or download a mirror into one) around it.
 */
public final class LocalPrefixFileIO implements FileIO {
  private String prefix;
  private String root;

  public LocalPrefixFileIO() {}

  @Override
  public void initialize(Map<String, String> properties) {
    prefix = properties.get("local.prefix");
    root = properties.get("local.root");
  }

  private File local(String uri) {
    if (!uri.startsWith(prefix)) {
      throw new IllegalArgumentException(uri + " is not under " + prefix);
    }
    return new File(root, uri.substring(prefix.length()));
  }

  @Override
  public InputFile newInputFile(String uri) {
    InputFile in = Files.localInput(local(uri));
    return new InputFile() {
      @Override
      public long getLength() {
        return in.getLength();
      }

      @Override
      public SeekableInputStream newStream() {
        return in.newStream();
      }

      @Override
      public String location() {
        return uri;
      }

      @Override
      public boolean exists() {
        return in.exists();
      }
    };
  }

  @Override
  public OutputFile newOutputFile(String uri) {
    File file = local(uri);
    OutputFile out = Files.localOutput(file);
    return new OutputFile() {
      @Override
      public PositionOutputStream create() {
        file.getParentFile().mkdirs();
        return out.create();
      }

      @Override
      public PositionOutputStream createOrOverwrite() {
        file.getParentFile().mkdirs();
        return out.createOrOverwrite();
      }

      @Override
      public String location() {
        return uri;
      }

      @Override
      public InputFile toInputFile() {
        return newInputFile(uri);
      }
    };
  }

  @Override
  public void deleteFile(String uri) {
    local(uri).delete();
  }
}
