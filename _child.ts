// The runtime of a child, process or worker. Its main module (made by
// process.ts) imports, in order: a boot module that calls boot() with who the
// child is, the target's module, then this module's runChild(). runChild
// receives the arguments, calls the target, and reports the exit code.
import { parentPort } from "node:worker_threads";
import { decode } from "./_codec.ts";
import { type Boot, boot as setSelf, finishChildren, REVIVE, self } from "./_state.ts";
import { FrameReader } from "./_wire.ts";
import { Process } from "./process.ts";
// Every handle kind must be registered before arguments are decoded.
import "./mod.ts";

let record: Boot | undefined;

/** Called by the boot module before the target's module loads. */
export function boot(bootRecord: Boot): void {
  record = bootRecord;
  setSelf(bootRecord);
}

interface StartMessage {
  type: "start";
  payload: Uint8Array;
  transfer: unknown[];
  shared: SharedArrayBuffer[];
}

function isWorker(): boolean {
  return self.startedAs === "worker";
}

/** Waits for the start message from the parent: the encoded arguments. */
async function receive(): Promise<unknown> {
  if (isWorker()) {
    const message = await new Promise<StartMessage>((resolve) => parentPort!.once("message", resolve));
    parentPort!.postMessage({ type: "started" });
    return decode(message.payload, { transfer: message.transfer, shared: message.shared });
  }
  const reader = new FrameReader(Deno.stdin);
  const payload = await reader.next();
  if (payload === null) Deno.exit(1); // The parent died before it sent anything.
  const args = decode(payload.slice());
  watchParent(reader);
  return args;
}

let finished = false;

/** The end of stdin is the parent's death: a child never outlives its parent. */
function watchParent(reader: FrameReader): void {
  (async () => {
    try {
      while (await reader.next() !== null) { /* the parent sends nothing more */ }
    } catch { /* stdin closed by us, or broken: either way the parent is gone */ }
    if (!finished) Deno.exit(1);
  })();
}

function exportOf(target: Record<string, unknown>, name: string, kind: string): unknown {
  const value = target[name];
  const ok = kind === "class"
    ? typeof value === "function" && value.prototype instanceof Process
    : typeof value === "function";
  if (!ok) {
    throw new TypeError(
      `Cannot run ${self.name}: its module does not export a ${kind === "class" ? "Process subclass" : "function"} named "${name}"; export it`,
    );
  }
  return value;
}

/** Runs the target with the arguments the parent sends, then exits. */
export async function runChild(target: Record<string, unknown>): Promise<void> {
  const { exportName, kind } = record!;
  let code = 0;
  try {
    const received = await receive();
    if (exportName !== "") {
      const fn = exportOf(target, exportName, kind);
      if (kind === "class") {
        const instance = Reflect.construct(Process, [REVIVE], fn as typeof Process) as Process;
        await Object.assign(instance, received as Record<string, unknown>).run();
      } else {
        await (fn as (...args: unknown[]) => unknown)(...(received as unknown[]));
      }
    }
  } catch (error) {
    // As Python prints a traceback: the error and its stack, on stderr.
    console.error(`Process ${self.name}:`);
    console.error(error);
    code = 1;
  }
  await finishChildren();
  finished = true;
  // In a worker, Deno.exit ends only the worker, and its parent sees the code.
  Deno.exit(code);
}
