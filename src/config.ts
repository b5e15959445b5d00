import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import convict from "convict";
import { ConfigError, errorMessage } from "./errors.ts";
import { addFormats } from "./config-formats.ts";
import { schema } from "./config-schema.ts";
import type { Config } from "./config-schema.ts";

export type { Config, MirrorSpec } from "./config-schema.ts";

/** The schema's own defaults, before config/default.json or anything else is applied. */
export function schemaDefaults(): Config {
  addFormats();
  return convict(schema, { env: {}, args: [] }).getProperties();
}

/** config/default.json: every key with its default, the first layer under the user's file. */
export const defaultsFile = fileURLToPath(new URL("../config/default.json", import.meta.url));

export interface LoadOptions {
  env: NodeJS.ProcessEnv;
  /** A JSON file with any subset of the keys. */
  file?: string | undefined;
  /** Values set on the command line, by dotted key. */
  overrides?: Record<string, unknown>;
}

/**
 * Reads the configuration once: defaults, then the file, then environment variables, then
 * command-line overrides. Unknown keys and bad values stop start-up with the key's name.
 */
export function loadConfig(options: LoadOptions): Readonly<Config> {
  addFormats();
  const cfg = convict(schema, { env: options.env, args: [] });
  try {
    cfg.loadFile(defaultsFile);
    if (options.file) {
      let parsed: unknown;
      try {
        parsed = JSON.parse(readFileSync(options.file, "utf8"));
      } catch (err) {
        throw new Error(`cannot read config file ${options.file}: ${errorMessage(err)}`, {
          cause: err,
        });
      }
      cfg.load(parsed as object);
    }
    // convict types set() by schema path; overrides arrive by dotted name from the CLI.
    const set = cfg.set.bind(cfg) as (key: string, value: unknown) => void;
    for (const [k, v] of Object.entries(options.overrides ?? {})) {
      if (v !== undefined) set(k, v);
    }
    cfg.validate({ allowed: "strict" });
  } catch (err) {
    throw new ConfigError(`invalid configuration: ${errorMessage(err)}`, { cause: err });
  }
  return deepFreeze(cfg.getProperties());
}

function deepFreeze<T>(o: T): T {
  if (o && typeof o === "object") {
    for (const v of Object.values(o)) deepFreeze(v);
    Object.freeze(o);
  }
  return o;
}

/** The configuration with every secret (the schema's sensitive keys) replaced, for `--print-config`. */
export function redactedConfig(config: Config): Config {
  const hide = (v: string) => (v ? "[redacted]" : "");
  return {
    ...config,
    lakefs: { ...config.lakefs, secretAccessKey: hide(config.lakefs.secretAccessKey) },
    s3: {
      ...config.s3,
      secretAccessKey: hide(config.s3.secretAccessKey),
      sessionToken: hide(config.s3.sessionToken),
    },
    server: { ...config.server, statusToken: hide(config.server.statusToken) },
    webhook: { ...config.webhook, token: hide(config.webhook.token) },
  };
}
