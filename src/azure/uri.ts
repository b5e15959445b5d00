import type { StorageAddress, StorageLocation } from "../destination/destination.ts";
import type { DestinationScheme } from "../destination/schemes.ts";
import { UsageError } from "../errors.ts";

/**
 * A prefix of one container of one Azure storage account, and where its Blob service answers.
 * `host` is the account's Blob host (`<account>.blob.core.windows.net`), or for an emulator
 * (Azurite) the `<ip>:<port>` whose paths start with the account (Azure's "IP-style" URLs).
 */
export interface AzureLocation {
  account: string;
  container: string;
  /** Empty, or ends with "/". */
  prefix: string;
  host: string;
  /** true: `http://<ip>:<port>/<account>/…`, the emulator form. */
  emulator: boolean;
}

/** The national clouds' Blob endpoints besides the public one (Azure's endpoint suffixes). */
const SUFFIXES = ["core.windows.net", "core.chinacloudapi.cn", "core.usgovcloudapi.net"];
const suffixPattern = SUFFIXES.map((s) => s.replaceAll(".", "\\.")).join("|");
const cloudHost = new RegExp(`^([^.]*)\\.(blob|dfs)\\.(${suffixPattern})$`);

export const AZURE_FORMS = [
  "https://<account>.blob.core.windows.net/<container>/<prefix>",
  "abfss://<container>@<account>.dfs.core.windows.net/<prefix>",
  "wasbs://<container>@<account>.blob.core.windows.net/<prefix>",
  "http://<ip>:<port>/<account>/<container>/<prefix> (an emulator such as Azurite)",
] as const;

/** Azure's rule for storage account names: 3 to 24 lower-case letters and digits. */
function checkAccount(account: string, uri: string): void {
  if (!/^[a-z0-9]{3,24}$/.test(account))
    throw new UsageError(
      `"${account}" is not a valid Azure storage account name (3-24 lower-case letters and digits) in "${uri}"`,
    );
}

/**
 * Azure's rule for container names: 3 to 63 lower-case letters, digits and hyphens, starting
 * with a letter or digit, no two hyphens in a row, not ending in a hyphen.
 */
function checkContainer(container: string, uri: string): void {
  if (!/^[a-z0-9](?:[a-z0-9]|-(?=[a-z0-9])){2,62}$/.test(container))
    throw new UsageError(
      `"${container}" is not a valid Azure container name (3-63 lower-case letters, digits and single hyphens, starting with a letter or digit) in "${uri}"`,
    );
}

/**
 * The prefix is taken as written, not percent-decoded (as `s3://` keys are). Segments `.` and
 * `..` are refused: URL handling on the way to the store would collapse them into another key.
 */
function checkPrefix(raw: string, uri: string): string {
  if (raw.split("/").some((s) => s === "." || s === ".."))
    throw new UsageError(`the prefix of "${uri}" has a "." or ".." segment`);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(raw))
    throw new UsageError(`the prefix of "${uri}" has a control character`);
  if (raw.length > 1000)
    throw new UsageError(`the prefix of "${uri}" is longer than Azure's blob names allow`);
  return raw && !raw.endsWith("/") ? `${raw}/` : raw;
}

function checkTail(rest: string, uri: string): void {
  if (/[?#]/.test(rest))
    throw new UsageError(
      `"${uri}" has a query or fragment: give a SAS in azure.sasToken (AZURE_STORAGE_SAS_TOKEN), not in the URI`,
    );
}

function splitHostAndPath(rest: string): [string, string] {
  const slash = rest.indexOf("/");
  return slash < 0 ? [rest, ""] : [rest.slice(0, slash), rest.slice(slash + 1)];
}

function cloudAccount(host: string, service: "blob" | "dfs", uri: string): [string, string] {
  const m = cloudHost.exec(host);
  if (!m || m[2] !== service)
    throw new UsageError(
      `"${host}" is not an Azure ${service} endpoint (<account>.${service}.core.windows.net) in "${uri}"`,
    );
  const account = m[1]!;
  checkAccount(account, uri);
  // Whatever Hadoop form named it, the objects are reached through the account's Blob service.
  return [account, `${account}.blob.${m[3]!}`];
}

const emulatorHost = /^(?:\d{1,3}(?:\.\d{1,3}){3}|localhost|\[[0-9a-f:.]+\]):(\d{1,5})$/i;

/** Whether a URI is written in one of the Azure forms (by scheme, and by host for https/http). */
export function isAzureUri(uri: string): boolean {
  if (/^(abfss?|wasbs?):\/\//i.test(uri)) return true;
  const m = /^https?:\/\/([^/?#]*)/i.exec(uri);
  if (!m) return false;
  const host = m[1]!.toLowerCase();
  return cloudHost.test(host) || emulatorHost.test(host);
}

/**
 * Parses a destination (or storage namespace, or copy source) in any of the forms AZURE_FORMS
 * lists. Throws UsageError naming the part that is wrong.
 */
export function parseAzureUri(uri: string): AzureLocation {
  const m = /^([a-z]+):\/\/(.*)$/is.exec(uri);
  if (!m)
    throw new UsageError(`an Azure destination must look like ${AZURE_FORMS[0]}, got "${uri}"`);
  const scheme = m[1]!.toLowerCase();
  const rest = m[2]!;
  checkTail(rest, uri);
  const [authority, path] = splitHostAndPath(rest);
  if (scheme === "abfs" || scheme === "abfss" || scheme === "wasb" || scheme === "wasbs") {
    const at = authority.lastIndexOf("@");
    const service = scheme.startsWith("abfs") ? "dfs" : "blob";
    if (at < 0)
      throw new UsageError(
        `"${uri}" names no container: write ${scheme}://<container>@<account>.${service}.core.windows.net/<prefix>`,
      );
    const container = authority.slice(0, at);
    checkContainer(container, uri);
    const [account, host] = cloudAccount(authority.slice(at + 1).toLowerCase(), service, uri);
    return { account, container, prefix: checkPrefix(path, uri), host, emulator: false };
  }
  if (scheme !== "https" && scheme !== "http")
    throw new UsageError(`"${scheme}://" is not an Azure scheme in "${uri}"`);
  if (authority.includes("@"))
    throw new UsageError(`"${uri}" has credentials in its host: configure them instead`);
  const host = authority.toLowerCase();
  const [first, afterFirst] = splitHostAndPath(path);
  if (emulatorHost.test(host)) {
    if (scheme !== "http")
      throw new UsageError(`the emulator form is http://<ip>:<port>/<account>/..., got "${uri}"`);
    const port = Number(emulatorHost.exec(host)![1]);
    if (port < 1 || port > 65535) throw new UsageError(`port ${port} is out of range in "${uri}"`);
    checkAccount(first, uri);
    const [container, prefix] = splitHostAndPath(afterFirst);
    checkContainer(container, uri);
    return { account: first, container, prefix: checkPrefix(prefix, uri), host, emulator: true };
  }
  if (scheme !== "https")
    throw new UsageError(`Azure Blob Storage is reached over https, got "${uri}"`);
  if (host.includes(":"))
    throw new UsageError(`"${uri}" names a port: Azure's endpoints take none`);
  const [account, blobHost] = cloudAccount(host, "blob", uri);
  checkContainer(first, uri);
  return {
    account,
    container: first,
    prefix: checkPrefix(afterFirst, uri),
    host: blobHost,
    emulator: false,
  };
}

/** The account's Blob service URL: `https://<host>`, or `http://<ip>:<port>/<account>`. */
export function serviceUrl(loc: Pick<AzureLocation, "host" | "account" | "emulator">): string {
  return loc.emulator ? `http://${loc.host}/${loc.account}` : `https://${loc.host}`;
}

/** The canonical URI: lakeFS's own `https://` form, or the emulator's `http://` one. */
export function formatAzureUri(loc: AzureLocation): string {
  return `${serviceUrl(loc)}/${loc.container}/${loc.prefix}`;
}

/**
 * The neutral container of a location: the service URL's host and path without the scheme
 * plus the container, so that it names the account (and the endpoint) as well:
 * `acct.blob.core.windows.net/data`, `127.0.0.1:10000/devstoreaccount1/data`.
 */
export function neutralContainer(loc: AzureLocation): string {
  return `${serviceUrl(loc).replace(/^https?:\/\//, "")}/${loc.container}`;
}

/** The AzureLocation of a neutral location (the inverse of azureStorageLocation). */
export function azureLocationOf(location: StorageLocation): AzureLocation {
  if (location.scheme !== "azure")
    throw new TypeError(`not an Azure location: ${location.scheme}://`);
  const emulator = emulatorHost.test(location.container.split("/")[0] ?? "");
  return parseAzureUri(`${emulator ? "http" : "https"}://${location.container}/${location.prefix}`);
}

export function azureStorageLocation(loc: AzureLocation): StorageLocation {
  return { scheme: "azure", container: neutralContainer(loc), prefix: loc.prefix };
}

/** Azure URIs for the destination registry (src/destination/schemes.ts). */
export const azureScheme: DestinationScheme = {
  scheme: "azure",
  forms: AZURE_FORMS,
  matches: isAzureUri,
  parseLocation: (uri) => azureStorageLocation(parseAzureUri(uri)),
  formatLocation: (loc) => formatAzureUri(azureLocationOf(loc)),
  parseAddress(uri) {
    let loc: AzureLocation;
    try {
      loc = parseAzureUri(uri);
    } catch {
      return undefined;
    }
    // An object's key is the location's prefix without the slash parsing added.
    if (uri.endsWith("/") || !loc.prefix) return undefined;
    const key = loc.prefix.slice(0, -1);
    return { scheme: "azure", container: neutralContainer(loc), key } satisfies StorageAddress;
  },
};
