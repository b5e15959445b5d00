import convict from "convict";
import { assertMirrors } from "./config-mirrors.ts";
import { parseDeleteLimit } from "./export/reconcile.ts";
import type { RoundRule } from "./export/rounds.ts";
import { Rounds, isRoundPresetName } from "./export/rounds.ts";
import { SCHEMES, parseLocation } from "./destination/schemes.ts";

/** The convict formats the schema names: each says what is wrong with a value, by key. */
function registerFormats(): void {
  convict.addFormat({ name: "http-url", validate: assertHttpUrl });
  convict.addFormat({
    name: "http-url-or-empty",
    validate: (v: unknown) => {
      if (v !== "") assertHttpUrl(v);
    },
  });
  convict.addFormat({ name: "mirrors", validate: (v: unknown) => assertMirrors(v) });
  convict.addFormat({
    name: "positive-int",
    validate(v: unknown) {
      if (typeof v !== "number" || !Number.isInteger(v) || v < 1)
        throw new Error(`must be a whole number of at least 1, got ${JSON.stringify(v)}`);
    },
    coerce: (v: string) => Number(v),
  });
  convict.addFormat({
    name: "delete-limit",
    validate(v: unknown) {
      parseDeleteLimit(String(v));
    },
  });
  convict.addFormat({
    name: "storage-locations",
    validate(v: unknown) {
      if (!Array.isArray(v)) {
        const forms = SCHEMES.flatMap((s) => s.forms).join(", ");
        throw new Error(`must be a list of locations (${forms})`);
      }
      for (const u of v) parseLocation(String(u));
    },
  });
  convict.addFormat({
    name: "rounds",
    validate(v: unknown) {
      if (typeof v === "string") {
        if (!isRoundPresetName(v))
          throw new Error(
            `must be spark, delta, iceberg or a list of {pattern, round}; got "${v}"`,
          );
        return;
      }
      if (!Array.isArray(v))
        throw new Error("must be spark, delta, iceberg or a list of {pattern, round}");
      new Rounds(v as RoundRule[]);
    },
  });
  convict.addFormat({
    name: "nullable-boolean",
    validate(v: unknown) {
      if (v !== null && typeof v !== "boolean") throw new Error("must be true, false or null");
    },
    coerce: (v: string) => (v === "null" ? null : v === "true"),
  });
  convict.addFormat({
    name: "brokers",
    validate(v: unknown) {
      if (!Array.isArray(v) || !v.every((b) => typeof b === "string" && /^[^\s:]+:\d+$/.test(b))) {
        throw new Error("must be a list of host:port");
      }
    },
    coerce: (v: string) =>
      v
        .split(",")
        .map((s) => s.trim())
        .filter(Boolean),
  });
}

let formatsRegistered = false;

/** convict formats are process-wide: registered once, on first use rather than at import. */
export function addFormats(): void {
  if (formatsRegistered) return;
  registerFormats();
  formatsRegistered = true;
}

function assertHttpUrl(v: unknown): void {
  let url: URL;
  try {
    url = new URL(String(v));
  } catch (err) {
    throw new Error(`must be an http(s) URL, got "${String(v)}"`, { cause: err });
  }
  if (url.protocol !== "http:" && url.protocol !== "https:")
    throw new Error(`must be an http(s) URL, got "${String(v)}"`);
}
