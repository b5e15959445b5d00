import type { Writable } from "node:stream";
import type { ExportProgress } from "../export/exporter.ts";

function mb(bytes: number): string {
  return (bytes / 1e6).toFixed(1);
}

function duration(seconds: number): string {
  if (!Number.isFinite(seconds)) return "?";
  const s = Math.round(seconds);
  return s >= 3600
    ? `${Math.floor(s / 3600)}h${Math.floor((s % 3600) / 60)}m`
    : s >= 60
      ? `${Math.floor(s / 60)}m${s % 60}s`
      : `${s}s`;
}

/**
 * One redrawn line on a terminal: objects, bytes, rate and an ETA once the number of objects is
 * known (lakeFS has no count call: a second, counting pass over the listing supplies it).
 */
export class TerminalProgress {
  readonly #out: Writable;
  readonly #started = Date.now();
  #timer: NodeJS.Timeout | undefined;
  #last: Readonly<ExportProgress> | undefined;
  #total: number | undefined;

  constructor(out: Writable) {
    this.#out = out;
  }

  start(): void {
    this.#timer = setInterval(() => this.#draw(), 250);
    this.#timer.unref();
  }

  update(p: Readonly<ExportProgress>): void {
    this.#last = p;
  }

  /** The number of objects to copy or delete, from the counting pass. */
  setTotal(total: number): void {
    this.#total = total;
  }

  stop(): void {
    if (!this.#timer) return;
    clearInterval(this.#timer);
    this.#timer = undefined;
    this.#draw();
    this.#out.write("\n");
  }

  #draw(): void {
    const p = this.#last;
    if (!p) return;
    const secs = (Date.now() - this.#started) / 1000;
    const done = p.copied + p.deleted + p.failed;
    const rate = done / Math.max(secs, 0.001);
    const eta =
      this.#total === undefined
        ? "counting…"
        : `${done}/${this.#total}, ETA ${duration((this.#total - done) / rate)}`;
    this.#out.write(
      `\r${p.copied} copied, ${p.deleted} deleted, ${p.failed} failed, ${mb(p.bytes)} MB, ` +
        `${rate.toFixed(0)} obj/s, ${mb(p.bytes / Math.max(secs, 0.001))} MB/s, ${eta}   `,
    );
  }
}
