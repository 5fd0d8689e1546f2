// Targets for tests/process_test.ts: each reports what it saw by writing a file.
import { currentProcess, parentProcess, Process } from "../../mod.ts";
import { Token } from "./token.ts";

if (import.meta.main) {
  // Must not run in a child: the child imports this module afresh.
  Deno.writeTextFileSync(Deno.args[0] ?? "main-ran", "main ran");
}

export function writeResult(path: string, value: unknown): void {
  Deno.writeTextFileSync(path, JSON.stringify(value));
}

export function echoArgs(path: string, ...rest: unknown[]): void {
  writeResult(path, rest);
}

export async function asyncEcho(path: string, value: unknown): Promise<void> {
  await Promise.resolve();
  writeResult(path, { type: typeof value, text: String(value) });
}

export function whoAmI(path: string): void {
  writeResult(path, { current: currentProcess(), parent: parentProcess() });
}

export function fail(message: string): void {
  throw new RangeError(message);
}

export function exitWith(code: number): void {
  Deno.exit(code);
}

export function sleepForever(): Promise<never> {
  return new Promise(() => setInterval(() => {}, 60_000));
}

export async function writeLater(path: string, ms: number): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, ms));
  writeResult(path, "late");
}

/** Reads `allowed`, and expects reading `denied` and the env to be refused. */
export function probeReads(allowed: string, denied: string): void {
  Deno.readTextFileSync(allowed);
  for (const attempt of [() => Deno.readTextFileSync(denied), () => Deno.env.get("HOME")]) {
    try {
      attempt();
    } catch (error) {
      if (error instanceof Deno.errors.NotCapable) continue;
      throw error;
    }
    throw new Error("the child was allowed what it was not given");
  }
}

/** Expects reading `path` to be refused. */
export function expectDenied(path: string): void {
  try {
    Deno.readTextFileSync(path);
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable) return;
    throw error;
  }
  throw new Error(`the child was allowed to read ${path}`);
}

export function checkToken(path: string, value: { deep: Token[] }): void {
  const [a, b] = value.deep;
  writeResult(path, {
    isToken: a instanceof Token,
    revived: a?.revived,
    id: a?.id,
    same: a === b,
  });
}

export async function startGrandchild(path: string, method: "process" | "worker"): Promise<void> {
  const child = new Process({ target: whoAmI, args: [path], startMethod: method });
  await child.start();
  await child.join();
}

export class Greeter extends Process {
  greeting = "hello";
  path = "";
  override run(): void {
    this.greeting += " from child";
    writeResult(this.path, {
      greeting: this.greeting,
      name: this.name,
      isGreeter: this instanceof Greeter,
      pid: this.pid ?? null,
    });
  }
}
