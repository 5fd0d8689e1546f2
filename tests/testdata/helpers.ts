// Helpers the test files share.
import { Process, type StartMethod } from "../../mod.ts";

/** Waits for the promise, failing when it takes longer than `ms`. */
export async function within<T>(ms: number, what: string, promise: Promise<T>): Promise<T> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(
          () => reject(new Error(`Timed out after ${ms} ms waiting for ${what}`)),
          ms,
        );
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}

/** Starts a child running `target(...args)`. */
export async function started(
  target: (...args: never[]) => unknown,
  args: unknown[],
  startMethod: StartMethod,
): Promise<Process> {
  const p = new Process({ target: target as (...args: unknown[]) => unknown, args, startMethod });
  await p.start();
  return p;
}
