// Costs of the shared-memory and lock primitives, uncontended, in both contexts. The two-child
// comparison with Python's P5 group is bench/shared_vs_python.ts.
import { Lock, RLock, Semaphore, Value } from "../mod.ts";

for (const method of ["worker", "process"] as const) {
  const lock = new Lock({ startMethod: method });
  const rlock = new RLock({ startMethod: method });
  const sem = new Semaphore(1, { startMethod: method });
  const value = new Value("i", 0, { startMethod: method });

  Deno.bench(
    `Lock acquire+release (${method})`,
    { group: `lock ${method}`, baseline: true },
    async () => {
      await lock.acquire();
      lock.release();
    },
  );
  Deno.bench(`RLock acquire+release (${method})`, { group: `lock ${method}` }, async () => {
    await rlock.acquire();
    rlock.release();
  });
  Deno.bench(`Semaphore acquire+release (${method})`, { group: `lock ${method}` }, async () => {
    await sem.acquire();
    sem.release();
  });
  Deno.bench(`Value lock + increment (${method})`, { group: `lock ${method}` }, async () => {
    const l = value.getLock();
    await l.acquire();
    value.value += 1;
    l.release();
  });
  Deno.bench(`Value.value += 1 (${method})`, { group: `value ${method}` }, () => {
    value.value += 1;
  });
}
