import type { Logger } from "pino";
import type { Config } from "../config.ts";
import { connectGcs } from "../gcs/backend.ts";
import { connectAzure } from "../azure/backend.ts";
import { connectS3 } from "../s3/backend.ts";
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
    return session.open(location);
  }

  async close(): Promise<void> {
    const sessions = [...this.#sessions.values()];
    this.#sessions.clear();
    await Promise.all(sessions.map((s) => s.close()));
  }
}
