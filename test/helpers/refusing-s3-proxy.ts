import { createServer, request } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo } from "node:net";

/**
 * Injected fault: a transparent proxy in front of the stack's S3 server that answers every
 * server-side copy (a request with `x-amz-copy-source`) with 403 AccessDenied, as S3 does when the
 * destination's credentials cannot read the source bucket. A real server cannot be told to do
 * that for one bucket pair on demand. Everything else passes through unchanged, Host header
 * included, so SigV4 signatures still verify.
 */
export async function startRefusingS3Proxy(
  target: string,
): Promise<{ url: string; refused: () => number; close: () => Promise<void> }> {
  const upstream = new URL(target);
  let refused = 0;
  const server: Server = createServer((req, res) => {
    if (req.headers["x-amz-copy-source"]) {
      refused++;
      req.resume();
      const body =
        '<?xml version="1.0" encoding="UTF-8"?><Error><Code>AccessDenied</Code><Message>Access Denied (injected)</Message></Error>';
      res.writeHead(403, {
        "content-type": "application/xml",
        "content-length": Buffer.byteLength(body),
      });
      res.end(body);
      return;
    }
    const fwd = request(
      {
        host: upstream.hostname,
        port: upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
      },
      (up) => {
        res.writeHead(up.statusCode ?? 502, up.headers);
        up.pipe(res);
      },
    );
    fwd.on("error", () => res.destroy());
    req.pipe(fwd);
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    refused: () => refused,
    close: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        server.closeAllConnections();
      }),
  };
}
