import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { connectGcs } from "../gcs/backend.ts";
import { connectAzure } from "../azure/backend.ts";
import { connectS3 } from "../s3/backend.ts";
import { AdaptiveLimit } from "./adaptive-limit.ts";
import { AdaptiveDestination } from "./adaptive.ts";
import { RateCap } from "./rate-cap.ts";
import type { Destination, StorageLocation } from "./destination.ts";
import { parseLocation } from "./schemes.ts";

/** One backend's clients, shared by every destination of its store that a process opens. */
export interface DestinationSession {
  open(location: StorageLocation): Destination;
  close(): Promise<void>;
}

export type ConnectBackend = (config: Config, logger: Logger) => DestinationSession;

/**
 * The backends by their canonical scheme (DestinationScheme.scheme in ./schemes.ts). A new store
 * adds its scheme there and its connector here; nothing else chooses by store.
 */
export const BACKENDS: Readonly<Record<string, ConnectBackend>> = {
  s3: connectS3,
  gs: connectGcs,
  azure: connectAzure,
};

/**
 * Opens destinations by URI: the scheme picks the backend, whose clients are made on first use
 * and shared from then on. `close()` releases them all.
 */
export class DestinationFactory {
  readonly #config: Config;
  readonly #logger: Logger;
  readonly #backends: Readonly<Record<string, ConnectBackend>>;
  readonly #sessions = new Map<string, DestinationSession>();
  /** `scheme://container` → how many bulk writes it takes at once (export.adaptiveConcurrency). */
  readonly #limits = new Map<string, AdaptiveLimit>();
  /** `scheme://container` → its share of the group's write caps. */
  readonly #caps = new Map<string, RateCap>();
  #members: () => number = () => 1;

  constructor(config: Config, logger: Logger, backends = BACKENDS) {
    this.#config = config;
    this.#logger = logger;
    this.#backends = backends;
  }

  /** Throws UsageError for a URI no backend takes or a malformed one. */
  open(uri: string): Destination {
    const location = parseLocation(uri);
    let session = this.#sessions.get(location.scheme);
    if (!session) {
      const connect = this.#backends[location.scheme];
      if (!connect) throw new TypeError(`no destination backend for ${location.scheme}://`);
      session = connect(this.#config, this.#logger);
      this.#sessions.set(location.scheme, session);
    }
    const destination = session.open(location);
    const { adaptiveConcurrency, maxRequestsPerSecond, maxBytesPerSecond } = this.#config.export;
    const capped = maxRequestsPerSecond > 0 || maxBytesPerSecond > 0;
    if (!adaptiveConcurrency && !capped) return destination;
    return new AdaptiveDestination(
      destination,
      adaptiveConcurrency ? this.#limitOf(location) : undefined,
      capped ? this.#capOf(location) : undefined,
    );
  }

  /** The group-wide caps are shared by this many daemons from now on (at least 1). */
  shareCapsWith(members: () => number): void {
    this.#members = members;
  }

  #capOf(location: StorageLocation): RateCap {
    const store = `${location.scheme}://${location.container}`;
    let cap = this.#caps.get(store);
    if (!cap) {
      cap = new RateCap({
        requestsPerSecond: this.#config.export.maxRequestsPerSecond,
        bytesPerSecond: this.#config.export.maxBytesPerSecond,
        share: () => this.#members(),
      });
      this.#caps.set(store, cap);
    }
    return cap;
  }

  #limitOf(location: StorageLocation): AdaptiveLimit {
    const store = `${location.scheme}://${location.container}`;
    let limit = this.#limits.get(store);
    if (!limit) {
      limit = new AdaptiveLimit({
        onChange: ({ limit: to, inFlight, cause }) => {
          const line = { store, limit: to ?? null, inFlight, cause };
          // Each step up is a debug line; falls and the lift are what an operator looks for.
          if (cause === "grew") this.#logger.debug(line, "writes succeed: one more at once");
          else if (cause === "throttled")
            this.#logger.info(line, "the store pushed back: fewer writes at once");
          else this.#logger.info(line, "writes succeed where the store pushed back: no limit");
        },
      });
      this.#limits.set(store, limit);
    }
    return limit;
  }

  async close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(sessions.map((s) => s.close()));
  }
}
