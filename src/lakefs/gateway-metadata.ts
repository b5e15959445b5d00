/**
 * User metadata as an S3 reader of the lakeFS gateway sees it.
 *
 * The lakeFS S3 gateway stores the `x-amz-meta-<name>` headers of an upload as entry metadata
 * keys `X-Amz-Meta-<lower-cased name>` with RFC 2047-decoded values. On GET and HEAD it serves
 * only the entry keys that start with `X-Amz-Meta-` (case-sensitive) and whose name part is an
 * HTTP token, each value passed through Go's `mime.QEncoding.Encode("utf-8", v)`; other keys
 * (metadata set through the lakeFS API, lakeFS's `::lakefs::` internals) are not visible to S3
 * readers at all. The mirror carries exactly what the gateway serves.
 */

const GATEWAY_PREFIX = "X-Amz-Meta-";

/** The metadata key characters the gateway serves: letters, digits and these HTTP token marks. */
const GATEWAY_KEY = /^[A-Za-z0-9\-_.#!$%&'*+^`|~]+$/;

export interface MirrorMetadata {
  /** Lower-cased names (as S3 stores them) to header-safe values. */
  metadata: Record<string, string>;
  /** Entry keys with the gateway prefix that the gateway does not serve (invalid names). */
  hidden: string[];
}

/** The user metadata an S3 reader of the lakeFS gateway gets for an entry with this metadata. */
export function gatewayMetadata(
  entry: Readonly<Record<string, string>> | undefined,
): MirrorMetadata {
  const metadata: Record<string, string> = {};
  const hidden: string[] = [];
  // Sorted, so that two keys differing only in case resolve the same way on every run.
  for (const key of Object.keys(entry ?? {}).sort()) {
    if (!key.startsWith(GATEWAY_PREFIX)) continue;
    const name = key.slice(GATEWAY_PREFIX.length);
    if (!GATEWAY_KEY.test(name)) {
      hidden.push(key);
      continue;
    }
    metadata[name.toLowerCase()] = encodeWordQ(entry?.[key] ?? "");
  }
  return { metadata, hidden };
}

/** RFC 2047 allows 75 characters per encoded-word; this much of it is content. */
const MAX_WORD_CONTENT = 75 - "=?utf-8?q?".length - "?=".length;

/**
 * RFC 2047 Q-encoding of a header value in UTF-8, split into encoded-words exactly as Go's
 * `mime.QEncoding.Encode("utf-8", value)` does, so that a mirrored value is byte-identical to
 * the one the lakeFS gateway serves. Printable ASCII (and tab) is returned unchanged. This is
 * also how S3 documents carrying non-ASCII user metadata.
 */
export function encodeWordQ(value: string): string {
  if (!needsEncoding(value)) return value;
  const bytes = Buffer.from(value, "utf8");
  let out = "=?utf-8?q?";
  let used = 0;
  for (let i = 0; i < bytes.length;) {
    const b = bytes[i]!;
    // A multi-byte character is never split across two encoded-words (RFC 2047, 5.3).
    const plain = b >= 0x20 && b <= 0x7e && b !== 0x3d && b !== 0x3f && b !== 0x5f;
    const runeLen = plain ? 1 : utf8Length(bytes, i);
    const encodedLen = plain ? 1 : 3 * runeLen;
    if (used + encodedLen > MAX_WORD_CONTENT) {
      out += "?= =?utf-8?q?";
      used = 0;
    }
    for (let j = i; j < i + runeLen; j++) out += qByte(bytes[j]!);
    used += encodedLen;
    i += runeLen;
  }
  return out + "?=";
}

function needsEncoding(value: string): boolean {
  for (const ch of value) {
    const c = ch.codePointAt(0)!;
    if ((c < 0x20 || c > 0x7e) && c !== 0x09) return true;
  }
  return false;
}

function qByte(b: number): string {
  if (b === 0x20) return "_";
  if (b >= 0x21 && b <= 0x7e && b !== 0x3d && b !== 0x3f && b !== 0x5f)
    return String.fromCharCode(b);
  return "=" + b.toString(16).toUpperCase().padStart(2, "0");
}

/** Bytes of the UTF-8 sequence starting at `i` (1 for a byte that starts no valid sequence). */
function utf8Length(bytes: Buffer, i: number): number {
  const b = bytes[i]!;
  const n = b >= 0xf0 ? 4 : b >= 0xe0 ? 3 : b >= 0xc0 ? 2 : 1;
  return Math.min(n, bytes.length - i);
}
