// Targets and shared types for tests/manager_test.ts and the manager examples.
import type {
  DictProxy,
  ListProxy,
  LockProxy,
  NamespaceProxy,
  QueueProxy,
  ValueProxy,
} from "../../mod.ts";

export async function appendRecords(list: ListProxy<{ id: number; name: string }>, n: number) {
  for (let i = 0; i < n; i++) await list.append({ id: i, name: `record ${i}` });
}

export async function appendMany(list: ListProxy<number>, n: number): Promise<void> {
  for (let i = 0; i < n; i++) await list.append(i);
}

export async function transform(ns: NamespaceProxy): Promise<void> {
  const x = await ns.get<number>("x");
  const y = await ns.get<number>("y");
  await ns.set("x", x + 5);
  await ns.set("y", y * 10);
}

export async function echoQueue(requests: QueueProxy<number>, replies: QueueProxy<number>) {
  for (;;) {
    const n = await requests.get();
    if (n < 0) return;
    await replies.put(n * 2);
  }
}

/** Takes the lock, says so, then waits to be killed. */
export async function holdLockForever(lock: LockProxy, ready: QueueProxy<string>) {
  await lock.acquire();
  await ready.put("locked");
  await new Promise(() => setInterval(() => {}, 60_000));
}

/** Waits on an empty queue after saying so, until killed. */
export async function getForever(queue: QueueProxy<string>, ready: QueueProxy<string>) {
  await ready.put("waiting");
  await queue.get();
}

/** Finds a queue inside a dict, and uses it. */
export async function useNested(dict: DictProxy<string, unknown>) {
  const queue = await dict.get("queue") as QueueProxy<string>;
  await queue.put("nested works");
}

export async function incrementMany(value: ValueProxy<number>, lock: LockProxy, n: number) {
  for (let i = 0; i < n; i++) {
    await using _ = await lock.hold();
    await value.set(await value.get() + 1);
  }
}

/** A class served by a manager through Manager.register. */
export class Counter {
  count: number;
  constructor(start = 0) {
    this.count = start;
  }
  increment(by = 1): number {
    this.count += by;
    return this.count;
  }
  async slowValue(): Promise<number> {
    await Promise.resolve();
    return this.count;
  }
  fail(message: string): never {
    throw new RangeError(message);
  }
  _hidden(): string {
    return "hidden";
  }
}

export async function useCounter(counter: { increment(by?: number): Promise<number> }) {
  await counter.increment(10);
}

/** Gives up its proxy as the last thing it does before the child exits. */
export function disposeLast(list: ListProxy<number>): void {
  list.dispose();
}
