import { Agent, createServer, request } from "node:http";
import type { Server } from "node:http";
import type { AddressInfo, Socket } from "node:net";

/** What the proxy does with one request instead of passing it on at once. */
export type Scripted =
  /** Answered by the proxy, never forwarded. */
  | { refuse: { status: number; body: string; contentType?: string } }
  /** Forwarded after a pause, as a slow server or network would. */
  | { delayMs: number }
  /**
   * Forwarded at once, its answer held back for a while: the server has acted (and decided
   * its answer) by the time the client hears of it.
   */
  | { delayAnswerMs: number };

export type Script = (method: string, path: string) => Scripted | undefined;

/**
 * Injected faults by script: a transparent proxy in front of a real server (the stack's lakeFS
 * or MinIO) that refuses the requests the script picks with an answer of its choosing (403 for
 * credentials that lost access to one repository), delays others, and passes everything else
 * through unchanged, Host header included, so signatures still verify. A real server cannot be
 * told to refuse one repository's listing, or to be slow for one bucket, on demand; that is all
 * this fake does. The script can be changed while the proxy runs.
 */
export async function startScriptedProxy(
  target: string,
  script: Script,
): Promise<{
  url: string;
  refused: () => number;
  delayed: () => number;
  setScript: (f: Script) => void;
  close: () => Promise<void>;
}> {
  const upstream = new URL(target);
  const agent = new Agent({ keepAlive: true });
  const sockets = new Set<Socket>();
  let rule = script;
  let refused = 0;
  let delayed = 0;
  // Held requests and answers: cleared on close, so a long hold never keeps the process alive.
  const timers = new Set<NodeJS.Timeout>();
  const later = (fn: () => void, ms: number) => {
    const t = setTimeout(() => {
      timers.delete(t);
      fn();
    }, ms);
    timers.add(t);
  };
  const server: Server = createServer((req, res) => {
    const scripted = rule(req.method ?? "GET", req.url ?? "/");
    if (scripted && "refuse" in scripted) {
      const answer = scripted.refuse;
      refused++;
      req.resume();
      res.writeHead(answer.status, {
        "content-type": answer.contentType ?? "application/json",
        "content-length": Buffer.byteLength(answer.body),
      });
      res.end(answer.body);
      return;
    }
    if (scripted && "delayMs" in scripted) {
      delayed++;
      req.pause();
      later(() => forward(), scripted.delayMs);
      return;
    }
    if (scripted) delayed++;
    forward(scripted?.delayAnswerMs ?? 0);
    function forward(holdAnswerMs = 0) {
      const fwd = request(
        {
          host: upstream.hostname,
          port: upstream.port,
          method: req.method,
          path: req.url,
          headers: req.headers,
          agent,
        },
        (up) => {
          up.pause();
          later(() => {
            res.writeHead(up.statusCode ?? 502, up.headers);
            up.pipe(res);
          }, holdAnswerMs);
        },
      );
      fwd.on("error", () => res.destroy());
      req.pipe(fwd);
    }
  });
  server.on("connection", (s: Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const { port } = server.address() as AddressInfo;
  return {
    url: `http://127.0.0.1:${port}`,
    refused: () => refused,
    delayed: () => delayed,
    setScript: (f) => (rule = f),
    close: () =>
      new Promise<void>((resolve) => {
        for (const t of timers) clearTimeout(t);
        timers.clear();
        for (const s of sockets) s.destroy();
        agent.destroy();
        server.close(() => resolve());
      }),
  };
}
