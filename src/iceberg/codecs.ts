import zlib from "node:zlib";
import * as snappy from "snappyjs";

/*
 * The block codecs Iceberg writers use for Avro metadata and Parquet delete files. Deflate and
 * gzip are node:zlib's. Zstandard is node:zlib's where Node has it (22.15 and later, 24);
 * on older Node (20, 22.13) it is read with fzstd (pure JavaScript, which handles the
 * streamed frames Java writes without a content size) and written with @bokuweb/zstd-wasm
 * (the reference C library compiled to WebAssembly). Snappy is snappyjs.
 */

interface NodeZstd {
  zstdCompressSync(buf: Uint8Array, options?: { params?: Record<number, number> }): Buffer;
  zstdDecompressSync(buf: Uint8Array): Buffer;
}

const nativeZstd: NodeZstd | undefined =
  typeof (zlib as unknown as Partial<NodeZstd>).zstdCompressSync === "function"
    ? (zlib as unknown as NodeZstd)
    : undefined;

/** The Zstandard level Iceberg's writers use by default (Avro's and Parquet's codecs: 3). */
export const ZSTD_LEVEL = 3;

interface WasmZstd {
  compress(buf: Uint8Array, level?: number): Uint8Array;
}
interface PureZstd {
  decompress(buf: Uint8Array): Uint8Array;
}
let fallback: Promise<{ wasm: WasmZstd; pure: PureZstd }> | undefined;
let loaded: { wasm: WasmZstd; pure: PureZstd } | undefined;

/** Makes zstdCompress/zstdDecompress usable; a no-op where node:zlib has Zstandard. */
export async function ensureZstd(): Promise<void> {
  if (nativeZstd || loaded) return;
  fallback ??= (async () => {
    const wasm = (await import("@bokuweb/zstd-wasm")) as unknown as WasmZstd & {
      init(): Promise<void>;
    };
    await wasm.init();
    const pure = (await import("fzstd")) as unknown as PureZstd;
    return { wasm, pure };
  })();
  loaded = await fallback;
}

function fallbackZstd(): { wasm: WasmZstd; pure: PureZstd } {
  if (!loaded) throw new TypeError("ensureZstd() must be awaited before Zstandard is used");
  return loaded;
}

export function zstdDecompress(buf: Uint8Array): Uint8Array {
  return nativeZstd ? nativeZstd.zstdDecompressSync(buf) : fallbackZstd().pure.decompress(buf);
}

export function zstdCompress(buf: Uint8Array, level = ZSTD_LEVEL): Uint8Array {
  if (nativeZstd) {
    return nativeZstd.zstdCompressSync(buf, {
      // ZSTD_c_compressionLevel is 100 in zstd's API; @types/node 20 does not declare it.
      params: {
        [(zlib.constants as unknown as Record<string, number>).ZSTD_c_compressionLevel ?? 100]:
          level,
      },
    });
  }
  return fallbackZstd().wasm.compress(buf, level);
}

/** Which Zstandard implementation this process uses, for logs and the README's claims. */
export function zstdImplementation(): "node:zlib" | "fzstd+zstd-wasm" {
  return nativeZstd ? "node:zlib" : "fzstd+zstd-wasm";
}

export function snappyCompress(buf: Uint8Array): Uint8Array {
  return snappy.compress(buf);
}

export function snappyDecompress(buf: Uint8Array): Uint8Array {
  return snappy.uncompress(buf);
}

export function crc32(buf: Uint8Array): number {
  return zlib.crc32(buf);
}
