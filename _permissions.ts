// Turns a Process's `permissions` option into `deno run` flags for the child:
// never more than this process was granted. Deno lets a program ask about a
// permission but not list its allow or deny lists (its own command line in
// /proc needs --allow-all), so a kind granted only in part is passed on only
// through the explicit entries a caller names, each checked here.
import type { Grants } from "./_handles.ts";

/** The permission kinds of Deno a child can be given. */
export type PermissionName = "read" | "write" | "net" | "env" | "sys" | "run" | "ffi" | "import";

/** One kind's setting: all of the parent's, none, or a list of what to allow. */
export type PermissionValue = "inherit" | boolean | (string | URL)[];

/**
 * A child's permissions: `"inherit"` (the parent's), or one setting per kind;
 * kinds left out are denied, as in Deno.
 */
export type Permissions = "inherit" | { [K in PermissionName]?: PermissionValue };

const NAMES: readonly PermissionName[] = [
  "read",
  "write",
  "net",
  "env",
  "sys",
  "run",
  "ffi",
  "import",
];
// Flags that change how the child resolves modules, so it resolves as we do.
const FORWARDED = [
  "--config",
  "--import-map",
  "--lock",
  "--no-lock",
  "--node-modules-dir",
  "--vendor",
  "--cached-only",
  "--no-remote",
  "--no-npm",
  "--no-config",
  "--unstable",
];

function descriptor(name: PermissionName, value: string): Deno.PermissionDescriptor {
  switch (name) {
    case "read":
    case "write":
    case "ffi":
      return { name, path: value };
    case "net":
    case "import":
      return { name, host: value };
    case "env":
      return { name, variable: value };
    case "sys":
      return { name, kind: value as NonNullable<Deno.SysPermissionDescriptor["kind"]> };
    case "run":
      return { name, command: value };
  }
}

function granted(desc: Deno.PermissionDescriptor): boolean {
  try {
    const status = Deno.permissions.querySync(desc);
    // "partial": granted with exceptions (a --deny-* flag): not all of it.
    return status.state === "granted" && !status.partial;
  } catch {
    return false;
  }
}

/** Throws a TypeError when `permissions` is not of the accepted shape. */
export function validatePermissions(permissions: unknown): Permissions {
  if (permissions === undefined || permissions === "inherit") return "inherit";
  if (typeof permissions !== "object" || permissions === null || Array.isArray(permissions)) {
    throw new TypeError(
      `Cannot use permissions ${
        String(permissions)
      }: pass "inherit" or an object such as { read: ["./data"], net: false }`,
    );
  }
  for (const [key, value] of Object.entries(permissions)) {
    if (!NAMES.includes(key as PermissionName)) {
      throw new TypeError(`Cannot use permission "${key}": it is not one of ${NAMES.join(", ")}`);
    }
    const ok = value === "inherit" || typeof value === "boolean" ||
      (Array.isArray(value) && value.every((v) => typeof v === "string" || v instanceof URL));
    if (!ok) {
      throw new TypeError(
        `Cannot use permission "${key}": its value must be "inherit", true, false or a list of strings`,
      );
    }
  }
  return permissions as Permissions;
}

let commandLine: string[] | undefined;

/**
 * This process's command line, or an empty list where it cannot be read:
 * Deno allows that only with --allow-all. Used for resolution flags only.
 */
function ownCommandLine(): string[] {
  if (commandLine !== undefined) return commandLine;
  commandLine = [];
  const path = "/proc/self/cmdline";
  if (Deno.build.os === "linux" && granted({ name: "read", path })) {
    try {
      commandLine = Deno.readTextFileSync(path).split("\0").filter((arg) => arg !== "");
    } catch { /* not readable: no partial grants to recover */ }
  }
  return commandLine;
}

/** The flags before the script, up to the script name. */
function ownFlags(): string[] {
  const args = ownCommandLine().slice(2);
  const end = args.findIndex((arg) => !arg.startsWith("-"));
  return end === -1 ? args : args.slice(0, end);
}

function asString(value: string | URL): string {
  return value instanceof URL
    ? (value.protocol === "file:" ? decodeURIComponent(value.pathname) : value.href)
    : value;
}

/** The module-resolution flags this process was started with. */
export function resolutionFlags(): string[] {
  const flags: string[] = [];
  const own = ownFlags();
  for (let i = 0; i < own.length; i++) {
    const flag = own[i]!;
    const name = flag.split("=")[0]!;
    if (FORWARDED.some((f) => name === f || name.startsWith("--unstable-"))) {
      flags.push(flag);
    } else if (name === "-c") {
      flags.push(flag.includes("=") ? flag : `${flag}=${own[++i] ?? ""}`);
    }
  }
  if (flags.some((f) => /^(--config|-c|--no-config)\b/.test(f))) return flags;
  const config = findConfig();
  if (config !== undefined) flags.push(`--config=${config}`);
  return flags;
}

/** The deno.json a `deno run` of our main module would find, if we may look. */
function findConfig(): string | undefined {
  const starts: string[] = [];
  // Deno.mainModule is undefined in a node:worker_threads worker.
  if (Deno.mainModule?.startsWith("file:")) starts.push(new URL(".", Deno.mainModule).pathname);
  try {
    starts.push(Deno.cwd());
  } catch { /* no read permission for the cwd */ }
  for (const start of starts) {
    let dir = decodeURIComponent(start).replace(/\/+$/, "") || "/";
    for (;;) {
      for (const file of ["deno.json", "deno.jsonc"]) {
        const path = `${dir}/${file}`;
        if (!granted({ name: "read", path })) continue;
        try {
          if (Deno.statSync(path).isFile) return path;
        } catch { /* not there */ }
      }
      if (dir === "/" || dir === "") break;
      dir = dir.slice(0, dir.lastIndexOf("/")) || "/";
    }
  }
  return undefined;
}

/**
 * The `--allow-*` flags for a child, capped by what this process has, plus
 * what the handles it is given need (their socket paths).
 */
export function permissionFlags(permissions: Permissions, needs?: Grants): string[] {
  const flags = ["--no-prompt"];
  for (const name of NAMES) {
    const setting = permissions === "inherit" ? "inherit" : (permissions[name] ?? false);
    const whole = setting === true || setting === "inherit";
    if (whole && granted({ name })) {
      flags.push(`--allow-${name}`);
      continue;
    }
    // A kind we hold only in part passes on only what the caller lists.
    const wanted = Array.isArray(setting) ? setting.map(asString) : [];
    if (needs !== undefined && (name === "read" || name === "write" || name === "net")) {
      wanted.push(...needs[name]);
    }
    const values = new Set(wanted.filter((value) => granted(descriptor(name, value))));
    if (values.size > 0) flags.push(`--allow-${name}=${[...values].join(",")}`);
  }
  return flags;
}
