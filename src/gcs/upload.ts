import { randomBytes } from "node:crypto";
import { Readable } from "node:stream";
import type { ObjectMeta } from "../destination/destination.ts";
import { DestinationError } from "../errors.ts";
import type { GcsHttp } from "./http.ts";

/** What Cloud Storage answers for a written object (the fields read here). */
export interface ObjectResource {
  name: string;
  generation: string;
  size: string;
  md5Hash?: string;
  crc32c?: string;
  contentType?: string;
  metadata?: Record<string, string>;
  updated?: string;
}

export interface Target {
  bucket: string;
  key: string;
  meta: ObjectMeta;
  /** `0`: only if no such object; a generation: only if that one is live. */
  ifGenerationMatch?: string | undefined;
  signal?: AbortSignal | undefined;
  fence?: (() => void) | undefined;
}

/** The object resource sent with a write: name, Content-Type and custom metadata as given. */
function resourceOf(t: Target): Record<string, unknown> {
  return {
    name: t.key,
    ...(t.meta.contentType !== undefined ? { contentType: t.meta.contentType } : {}),
    metadata: t.meta.metadata,
  };
}

function conditionQuery(t: Target): Record<string, string> {
  return t.ifGenerationMatch !== undefined ? { ifGenerationMatch: t.ifGenerationMatch } : {};
}

/**
 * One request (`uploadType=multipart`): the resource and the bytes in a multipart/related body.
 * A stream body goes through as it arrives, the fence passed before the request and with each
 * chunk, so a process paused mid-upload cannot finish it; a body that errors, or ends short of
 * `size`, aborts the request before Cloud Storage has it whole.
 */
export async function uploadWhole(
  http: GcsHttp,
  t: Target,
  body: Uint8Array | Readable,
  size: number,
): Promise<ObjectResource> {
  const boundary = `lakefs-mirror-${randomBytes(12).toString("hex")}`;
  const head = Buffer.from(
    `--${boundary}\r\nContent-Type: application/json; charset=UTF-8\r\n\r\n` +
      `${JSON.stringify(resourceOf(t))}\r\n--${boundary}\r\n` +
      `Content-Type: ${t.meta.contentType ?? "application/octet-stream"}\r\n\r\n`,
  );
  const tail = Buffer.from(`\r\n--${boundary}--\r\n`);
  const fence = t.fence;
  async function* parts(): AsyncGenerator<Uint8Array> {
    yield head;
    if (body instanceof Uint8Array) yield body;
    else {
      let sent = 0;
      for await (const chunk of body) {
        fence?.();
        sent += (chunk as Buffer).length;
        if (sent > size) throw new DestinationError(`body longer than ${size} bytes`, true);
        yield chunk as Buffer;
      }
      if (sent !== size)
        throw new DestinationError(`body ended at ${sent} of ${size} bytes`, true, {
          reason: "Network",
        });
    }
    yield tail;
  }
  fence?.();
  const res = await http.send(
    "POST",
    http.uploadUrl(t.bucket, { uploadType: "multipart", ...conditionQuery(t) }),
    {
      headers: {
        "content-type": `multipart/related; boundary=${boundary}`,
        "content-length": String(head.length + size + tail.length),
      },
      body: Readable.from(parts(), { objectMode: false }),
      signal: t.signal,
    },
  );
  return (await res.body.json()) as ObjectResource;
}

/**
 * A resumable upload ("Perform resumable uploads" in the GCS documentation): a session, then
 * chunks of `chunkBytes` (a multiple of 256 KiB) with `Content-Range`, each held in memory
 * while it is sent. The object appears only when the last chunk lands, so the fence is passed
 * before each chunk and the last one above all; whatever fails (the body, a chunk, the fence,
 * the signal) cancels the session, and nothing appears at the key.
 */
export async function uploadResumable(
  http: GcsHttp,
  t: Target,
  body: Readable,
  size: number,
  chunkBytes: number,
): Promise<ObjectResource> {
  t.fence?.();
  const started = await http.send(
    "POST",
    http.uploadUrl(t.bucket, { uploadType: "resumable", ...conditionQuery(t) }),
    {
      headers: {
        "content-type": "application/json; charset=UTF-8",
        "x-upload-content-length": String(size),
        ...(t.meta.contentType ? { "x-upload-content-type": t.meta.contentType } : {}),
      },
      body: JSON.stringify(resourceOf(t)),
      signal: t.signal,
    },
  );
  await started.body.text();
  const session = String(started.headers.location ?? "");
  if (!session) throw new DestinationError("no resumable session URI in the answer", true);
  try {
    let at = 0;
    for await (const chunk of chunksOf(body, chunkBytes, size)) {
      t.fence?.();
      const result = await sendChunk(http, session, chunk, at, size, t);
      at += chunk.length;
      if (result) return result;
    }
    throw new DestinationError(`body ended at ${at} of ${size} bytes`, true, { reason: "Network" });
  } catch (err) {
    // A cancelled session answers 499; it is cancelled so that nothing can finish it later.
    await http
      .send("DELETE", session, { accept: [499] })
      .then((r) => r.body.text())
      .catch(() => undefined);
    throw err;
  }
}

/**
 * Sends one chunk at offset `at`; resends what the store says it did not keep (its `Range`
 * answer). Returns the object once the last chunk is in.
 */
async function sendChunk(
  http: GcsHttp,
  session: string,
  chunk: Buffer,
  at: number,
  size: number,
  t: Target,
): Promise<ObjectResource | undefined> {
  const end = at + chunk.length;
  const last = end === size;
  let from = at;
  for (let tries = 0; tries < 4; tries++) {
    const res = await http.send("PUT", session, {
      headers: {
        "content-range": size === 0 ? "bytes */0" : `bytes ${from}-${end - 1}/${last ? size : "*"}`,
        // The session's resource names the Content-Type; fake-gcs-server takes it from here.
        "content-type": t.meta.contentType ?? "application/octet-stream",
      },
      body: chunk.subarray(from - at),
      signal: t.signal,
      accept: [308],
    });
    if (res.status !== 308) return (await res.body.json()) as ObjectResource;
    await res.body.text();
    // 308 "Resume Incomplete": `Range: bytes=0-<last byte kept>`, absent when none is.
    const kept = /^bytes=0-(\d+)$/.exec(String(res.headers.range ?? ""));
    const persisted = kept ? Number(kept[1]) + 1 : 0;
    if (persisted >= end) {
      if (!last) return undefined;
      throw new DestinationError("resumable session kept every byte but made no object", true);
    }
    if (persisted < at || persisted > end)
      throw new DestinationError(`resumable session kept ${persisted} bytes, sent ${end}`, true);
    from = persisted;
  }
  throw new DestinationError(`resumable session did not take bytes ${at}-${end - 1}`, true);
}

/** The body in chunks of exactly `chunkBytes` (the last one shorter); at most `size` bytes. */
async function* chunksOf(body: Readable, chunkBytes: number, size: number): AsyncGenerator<Buffer> {
  if (size === 0) {
    yield Buffer.alloc(0);
    return;
  }
  let pending: Buffer[] = [];
  let pendingBytes = 0;
  let total = 0;
  for await (const data of body) {
    let b = data as Buffer;
    total += b.length;
    if (total > size) throw new DestinationError(`body longer than ${size} bytes`, true);
    while (b.length > 0) {
      const take = Math.min(b.length, chunkBytes - pendingBytes);
      pending.push(b.subarray(0, take));
      pendingBytes += take;
      b = b.subarray(take);
      if (pendingBytes === chunkBytes) {
        yield Buffer.concat(pending);
        pending = [];
        pendingBytes = 0;
      }
    }
  }
  if (total !== size)
    throw new DestinationError(`body ended at ${total} of ${size} bytes`, true, {
      reason: "Network",
    });
  if (pendingBytes > 0) yield Buffer.concat(pending);
}
