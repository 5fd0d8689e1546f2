// Finds the module and export name of a Process target, so a child can import
// it by name. The caller's stack tells which modules to look in; their source
// tells whether the function is exported there or imported from elsewhere.
// Where the source cannot be read, the child checks the export when it starts.

/** Where a child finds a target: a module and the name it is exported under. */
export interface TargetRef {
  module: string;
  exportName: string;
}

const OWN_DIR = new URL(".", import.meta.url).href;

function escape(name: string): string {
  return name.replace(/[$]/g, "\\$");
}

function readSource(url: string): string | undefined {
  if (!url.startsWith("file:")) return undefined;
  const path = decodeURIComponent(new URL(url).pathname);
  try {
    if (Deno.permissions.querySync({ name: "read", path }).state !== "granted") return undefined;
    return Deno.readTextFileSync(path);
  } catch {
    return undefined;
  }
}

/** The name `name` is exported under in `source`, if it is. */
function exportedAs(source: string, name: string): string | undefined {
  const n = escape(name);
  if (
    new RegExp(`export\\s+default\\s+(?:async\\s+)?(?:function\\s*\\*?|class)\\s*${n}\\b`).test(
      source,
    )
  ) {
    return "default";
  }
  const declared = new RegExp(
    `export\\s+(?:declare\\s+)?(?:(?:async\\s+)?function\\s*\\*?|(?:abstract\\s+)?class|const|let|var)\\s+${n}(?![\\w$])`,
  );
  if (declared.test(source)) return name;
  if (new RegExp(`export\\s+default\\s+${n}\\s*;`).test(source)) return "default";
  for (const list of source.matchAll(/export\s*(?:type\s*)?\{([^}]*)\}/g)) {
    for (const entry of list[1]!.split(",")) {
      const [local, exported] = entry.trim().split(/\s+as\s+/);
      if (local === name) return exported ?? local;
    }
  }
  return undefined;
}

function resolve(specifier: string, referrer: string): string | undefined {
  try {
    if (/^\.{0,2}\//.test(specifier)) return new URL(specifier, referrer).href;
    return import.meta.resolve(specifier);
  } catch {
    return undefined;
  }
}

/** Modules `source` imports `name` from, by named, namespace or default import. */
function importedFrom(source: string, name: string, referrer: string): TargetRef[] {
  const found: TargetRef[] = [];
  const from = `\\s*from\\s*["']([^"']+)["']`;
  for (
    const m of source.matchAll(
      new RegExp(`import\\s*(?:[\\w$]+\\s*,\\s*)?\\{([^}]*)\\}${from}`, "g"),
    )
  ) {
    for (const entry of m[1]!.split(",")) {
      const [imported] = entry.trim().split(/\s+as\s+/);
      const module = resolve(m[2]!, referrer);
      if (imported === name && module !== undefined) found.push({ module, exportName: name });
    }
  }
  for (
    const m of source.matchAll(
      new RegExp(
        `import\\s*(?:\\*\\s*as\\s*[\\w$]+|([\\w$]+))\\s*(?:,\\s*\\{[^}]*\\})?${from}`,
        "g",
      ),
    )
  ) {
    const module = resolve(m[2]!, referrer);
    if (module === undefined) continue;
    const other = readSource(module);
    const exportName = other === undefined ? undefined : exportedAs(other, name);
    if (exportName !== undefined) found.push({ module, exportName });
  }
  return found;
}

/** File URLs of the stack's frames outside this package, nearest first. */
export function callerModules(stack: string | undefined): string[] {
  const modules: string[] = [];
  for (const m of (stack ?? "").matchAll(/((?:file|https?):\/\/[^\s)]+?):\d+:\d+/g)) {
    const url = m[1]!;
    const ours = url.startsWith(OWN_DIR) && !url.slice(OWN_DIR.length).includes("/");
    if (ours || modules.includes(url)) continue;
    modules.push(url);
  }
  return modules;
}

/** Resolves a user-given module (a path relative to the cwd, or a URL). */
export function moduleUrl(module: string | URL): string {
  if (module instanceof URL) return module.href;
  if (/^[a-z][a-z0-9+.-]*:/i.test(module)) return new URL(module).href;
  let cwd = "/";
  try {
    cwd = Deno.cwd();
  } catch { /* no read permission for the cwd: the path must be absolute */ }
  return new URL(module, `file://${cwd.replace(/\/?$/, "/")}`).href;
}

/**
 * The module and export name under which `fn` can be imported, or a TypeError
 * saying to export it. `what` names the role for messages ("Process target").
 */
export function findTarget(
  fn: unknown,
  what: string,
  callers: string[],
  module?: string | URL,
): TargetRef {
  if (typeof fn !== "function") {
    throw new TypeError(
      `Cannot use ${typeof fn} as a ${what}: pass a function exported from a module`,
    );
  }
  const name = fn.name;
  if (name === "" || name.startsWith("bound ") || !/^[\w$]+$/.test(name)) {
    throw new TypeError(
      `Cannot use an anonymous or bound function as a ${what}: a child imports its target by name, so export a named function from a module`,
    );
  }
  const candidates = module === undefined ? callers : [moduleUrl(module)];
  const unread: string[] = [];
  for (const url of candidates) {
    const source = readSource(url);
    if (source === undefined) {
      unread.push(url);
      continue;
    }
    const exportName = exportedAs(source, name);
    if (exportName !== undefined) return { module: url, exportName };
    const imported = importedFrom(source, name, url);
    if (imported.length > 0) return imported[0]!;
  }
  // We could not read the source: the child checks the export when it starts.
  if (unread.length > 0) return { module: unread[0]!, exportName: name };
  const where = candidates.length > 0 ? candidates[0] : "the calling module";
  throw new TypeError(
    `Cannot use function "${name}" as a ${what}: it is not exported from ${where}; export it (export function ${name}) or name its module with { module }`,
  );
}
