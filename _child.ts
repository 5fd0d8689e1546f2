// The runtime of a child, process or worker. Its main module (made by
// process.ts) imports, in order: _boot.ts with who the child is, the target's
// module, then this module's runChild(), which receives the arguments, calls
// the target, and reports the exit code.
import { decode } from "./_codec.ts";
import { classes, finishChildren, REVIVE, self } from "./_state.ts";
import { FrameReader } from "./_wire.ts";

interface StartMessage {
  type: "start";
  payload: Uint8Array;
  transfer: unknown[];
  shared: SharedArrayBuffer[];
}

function isWorker(): boolean {
  return self.startedAs === "worker";
}

type Post = (message: unknown) => void;
let post: Post = () => {};

/** Waits for the start message from the parent: the encoded arguments. */
async function receive(): Promise<unknown> {
  if (isWorker()) {
    let message: StartMessage;
    if (self.boot!.nodeWorker) {
      const { parentPort } = await import("node:worker_threads");
      post = (m) => parentPort!.postMessage(m);
      message = await new Promise<StartMessage>((resolve) => parentPort!.once("message", resolve));
    } else {
      const scope = globalThis as unknown as { onmessage: unknown; postMessage: Post };
      post = (m) => scope.postMessage(m);
      message = await new Promise<StartMessage>((resolve) => {
        scope.onmessage = (event: MessageEvent<StartMessage>) => resolve(event.data);
      });
      scope.onmessage = null;
      // A web Worker's parent sees no exit code: tell it before Deno.exit.
      const exit = Deno.exit;
      Object.defineProperty(Deno, "exit", {
        value: (code?: number): never => {
          finished = true;
          post({ type: "exit", code: code ?? 0 });
          return exit(code);
        },
      });
    }
    post({ type: "started" });
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
  // A subclass's module imported process.ts, which set classes.Process.
  const Process = classes.Process;
  const ok = kind === "class"
    ? typeof value === "function" && Process !== undefined && value.prototype instanceof Process
    : typeof value === "function";
  if (!ok) {
    throw new TypeError(
      `Cannot run ${self.name}: its module does not export a ${
        kind === "class" ? "Process subclass" : "function"
      } named "${name}"; export it`,
    );
  }
  return value;
}

/** Runs the target with the arguments the parent sends, then exits. */
export async function runChild(target: Record<string, unknown>): Promise<void> {
  const { exportName, kind } = self.boot!;
  let code = 0;
  try {
    const received = await receive();
    if (exportName !== "") {
      const fn = exportOf(target, exportName, kind);
      if (kind === "class") {
        const instance = Reflect.construct(classes.Process!, [REVIVE], fn as () => void);
        await (Object.assign(instance, received) as { run(): unknown }).run();
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
