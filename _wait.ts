// Waiting with { timeout, signal }: one helper for every call that can wait.

/** The options of a call that can wait. */
export interface WaitOptions {
  timeout?: number | undefined;
  signal?: AbortSignal | undefined;
}

/** Checks `{ timeout, signal }` and arranges the give-up; returns a cleanup. */
export function waitFor<T>(
  options: WaitOptions | undefined,
  what: string,
  register: (settle: (ok: boolean) => void) => () => void,
  attempt: () => T | undefined,
  onTimeout: () => Error,
): Promise<T> {
  const timeout = options?.timeout;
  const signal = options?.signal;
  if (timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout))) {
    return Promise.reject(
      new TypeError(
        `Cannot ${what} with timeout ${String(timeout)}: it must be a number of milliseconds`,
      ),
    );
  }
  if (signal?.aborted) return Promise.reject(signal.reason);
  let value: T | undefined;
  try {
    value = attempt();
  } catch (error) {
    return Promise.reject(error);
  }
  if (value !== undefined) return Promise.resolve(value);
  return new Promise<T>((resolve, reject) => {
    let timer: ReturnType<typeof setTimeout> | undefined;
    let settled = false;
    let unregister = (): void => {}; // the cleanup, once register() returns it
    const done = () => {
      settled = true;
      if (timer !== undefined) clearTimeout(timer);
      signal?.removeEventListener("abort", onAbort);
      unregister();
    };
    const onAbort = () => {
      done();
      reject(signal!.reason);
    };
    // A wake may come while register() runs, before it returns the cleanup.
    const cleanup = register(() => {
      if (settled) return;
      let result: T | undefined;
      try {
        result = attempt();
      } catch (error) {
        done();
        reject(error);
        return;
      }
      if (result === undefined) return;
      done();
      resolve(result);
    });
    if (settled) return cleanup();
    unregister = cleanup;
    if (timeout !== undefined) {
      timer = setTimeout(() => {
        done();
        reject(onTimeout());
      }, Math.max(0, timeout));
    }
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}
