// Targets for tests/shared_test.ts and tests/sync_test.ts, run in "process" and "worker" children.
import type {
  Barrier,
  BoundedSemaphore,
  Condition,
  Event,
  Lock,
  RLock,
  Semaphore,
  SharedArray,
  SharedMemory,
  Value,
} from "../../mod.ts";
import { SharedMemory as SharedMemoryClass } from "../../mod.ts";

/** Adds 1 to the value `n` times, each under the value's lock. */
export async function addMany(value: Value<"i">, n: number): Promise<void> {
  const lock = value.getLock();
  for (let i = 0; i < n; i++) {
    await lock.acquire();
    value.value += 1;
    lock.release();
  }
}

/** Adds 1 to the value `n` times under an explicit lock. */
export async function addManyWith(
  value: Value<"i">,
  lock: Lock,
  n: number,
  start: Event,
): Promise<void> {
  await start.wait();
  for (let i = 0; i < n; i++) {
    await lock.acquire();
    value.value += 1;
    lock.release();
  }
}

/** Sets the value and negates every element of the array. */
export function setAndNegate(value: Value<"d">, array: SharedArray<"i">): void {
  value.value = 3.1415927;
  for (let i = 0; i < array.length; i++) array.set(i, -array.get(i));
}

/** Writes a value of each kind into the slots it was given. */
export function writeKinds(big: Value<"q">, bytes: SharedArray<"B">): void {
  big.value = -(2n ** 62n);
  bytes.view.set([7, 8, 9]);
}

/** Attaches to a named segment and writes its name's length at byte 0. */
export function writeNamed(name: string, startMethod: "process" | "worker"): void {
  const shm = new SharedMemoryClass({ name, startMethod });
  shm.buf[0] = name.length;
  shm.buf[shm.size - 1] = 255;
  shm.close();
}

/** Writes through a handed-over segment. */
export function writeHanded(shm: SharedMemory): void {
  shm.buf[1] = 42;
  shm.close();
}

/** Creates a named segment, reports its name, then waits to be killed. */
export async function createAndHang(done: Event, names: SharedArray<"B">): Promise<void> {
  const shm = new SharedMemoryClass({ create: true, size: 64, startMethod: "process" });
  const bytes = new TextEncoder().encode(shm.name);
  names.view.set(bytes);
  done.set();
  await new Promise(() => setInterval(() => {}, 60_000));
}

/** Takes the lock, says so, then waits to be killed while holding it. */
export async function holdAndHang(lock: Lock | RLock, held: Event): Promise<void> {
  await lock.acquire();
  held.set();
  await new Promise(() => setInterval(() => {}, 60_000));
}

/** Waits for the event, then reports through another. */
export async function waitThenSet(event: Event, reply: Event): Promise<void> {
  await event.wait();
  reply.set();
}

/** Acquires and releases a semaphore, counting in `count`. */
export async function semaphoreWorker(
  sem: Semaphore,
  inside: Value<"i">,
  most: Value<"i">,
  rounds: number,
): Promise<void> {
  for (let i = 0; i < rounds; i++) {
    await sem.acquire();
    {
      using _ = await inside.getLock().hold();
      inside.value += 1;
      if (inside.value > most.value) most.value = inside.value;
    }
    await Promise.resolve();
    {
      using _ = await inside.getLock().hold();
      inside.value -= 1;
    }
    sem.release();
  }
}

/** Releases a bounded semaphore once more than allowed; reports the error's name. */
export function overRelease(sem: BoundedSemaphore, result: SharedArray<"B">): void {
  try {
    sem.release();
  } catch (error) {
    result.view.set(new TextEncoder().encode((error as Error).name));
  }
}

/** Waits on the condition: says when it is about to wait, and counts the wake-up. */
export async function conditionWaiter(
  cond: Condition,
  entered: Semaphore,
  woken: Value<"i">,
  woke: Semaphore,
): Promise<void> {
  await cond.acquire();
  // The lock is held until wait() has queued this waiter.
  entered.release();
  await cond.wait();
  woken.value += 1;
  cond.release();
  woke.release();
}

/** Waits at the barrier; records its index. */
export async function barrierParty(
  barrier: Barrier,
  indexes: SharedArray<"i">,
  slot: number,
): Promise<void> {
  indexes.set(slot, await barrier.wait());
}

/** Waits at the barrier and records whether it broke. */
export async function barrierBroken(
  barrier: Barrier,
  result: Value<"i">,
  entered: Event,
): Promise<void> {
  entered.set();
  try {
    await barrier.wait();
    result.value = 1;
  } catch (error) {
    result.value = (error as Error).name === "BrokenBarrierError" ? 2 : 3;
  }
}

let actionCounter: Value<"i"> | undefined;

/** Where {@linkcode barrierAction} counts its runs, in this process or worker. */
export function setActionCounter(counter: Value<"i">): void {
  actionCounter = counter;
}

/** A barrier action: counts its runs in the shared counter. */
export function barrierAction(): void {
  actionCounter!.value += 1;
}

/** Waits at a barrier whose action is {@linkcode barrierAction}. */
export async function barrierWithAction(barrier: Barrier, counter: Value<"i">): Promise<void> {
  setActionCounter(counter);
  await barrier.wait();
}

/** Uses an RLock recursively; reports what a second acquire saw. */
export async function recursive(lock: RLock, result: Value<"i">): Promise<void> {
  await lock.acquire();
  result.value = (await lock.acquire({ timeout: 0 })) ? 1 : 0;
  lock.release();
  lock.release();
}
