/**
 * Managers (Python's `multiprocessing.managers`): a server, in its own process
 * or worker, that owns shared lists, dicts, namespaces, queues, values and
 * sync primitives, and hands out proxies to them. Proxies are handles: pass
 * them to any process or worker, at any depth in arguments or messages, and
 * every side sees the same object. All proxy methods are async.
 *
 * A manager can serve over TCP with a key (`Manager.start({ address, authkey })`)
 * and be joined from other programs or machines (`Manager.connect`). Both sides
 * prove they know the key (a mutual HMAC challenge) before any object is touched.
 *
 * Unlike Python's managers, which unpickle what they receive (and so can be
 * made to run code by anyone who has the key), nothing a manager or a proxy
 * receives can run code: values cross as structured-clone data only, and only
 * the listed methods of shared objects can be called.
 *
 * ```ts
 * import { Manager, Process, type ListProxy } from "@seed/multiprocessing";
 *
 * export async function work(list: ListProxy<number>) {
 *   await list.append(42);
 * }
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const list = await manager.list<number>();
 *   const p = new Process({ target: work, args: [list] });
 *   await p.start();
 *   await p.join();
 *   console.log(await list.toArray()); // [ 42 ]
 * }
 * ```
 *
 * @module
 */
import {
  type Address,
  attach,
  channelFor,
  closeChannel,
  type Endpoint,
  hooks,
  proxyKind,
  type ProxyRef,
  proxyRefs,
  toAuthkey,
} from "./_manager_client.ts";
import { type ServeConfig, serveManager, type TypeSpec } from "./_manager_server.ts";
import { decode } from "./_codec.ts";
import { markHandleClass } from "./_handles.ts";
import { exits, type StartMethod, validateStartMethod } from "./_state.ts";
import { moduleUrl } from "./_target.ts";
import { makeSocketDir } from "./_socket.ts";
import { FrameReader } from "./_wire.ts";
import { ProcessError, TimeoutError } from "./errors.ts";
import { Process } from "./process.ts";
import type { ElementOf, Typecode } from "./shared.ts";

export type { ElementOf, Typecode } from "./shared.ts";

export type { StartMethod } from "./_state.ts";

type ServerProcess = Process<[ServeConfig]>;

const SERVER_MODULE = new URL("./_manager_server.ts", import.meta.url);

/** Where a manager listens: a Unix socket path, or a TCP host and port. */
export type ManagerAddress = string | { hostname: string; port: number };

/** Options of a proxy call that can wait. */
export interface ProxyWaitOptions {
  /** Milliseconds to wait at most; `0` tries once. Waits without limit when left out. */
  timeout?: number;
  /** Aborts the wait; the call then rejects with the signal's reason. */
  signal?: AbortSignal;
}

/** Options of {@linkcode Manager.start}. */
export interface ManagerStartOptions {
  /**
   * How the server runs: `"process"` (a separate `deno` process, so a busy
   * parent does not stall it) or `"worker"` (a worker in this process).
   *
   * @default {"process"}
   */
  startMethod?: StartMethod;
  /**
   * Serve over TCP at this address (port 0 picks a free port; see
   * {@linkcode Manager.address}). Left out, the manager serves on a Unix
   * socket in a private temporary directory.
   */
  address?: { hostname: string; port: number };
  /**
   * The key clients must prove they know (bytes, or a string as UTF-8).
   *
   * @default {32 random bytes}
   */
  authkey?: Uint8Array | string;
  /** Serve TCP over TLS with this certificate chain and key (PEM files). */
  tls?: { certFile: string; keyFile: string; caFile?: string };
}

/** Options of {@linkcode Manager.connect}. */
export interface ManagerConnectOptions {
  /** The key the manager was started with. */
  authkey: Uint8Array | string;
  /**
   * Connect over TLS: `true` trusts the system's CAs; `caFile` names a PEM
   * file of CA certificates to trust instead.
   *
   * @default {false}
   */
  tls?: boolean | { caFile: string };
}

/** Where {@linkcode Manager.register} finds a class. */
export interface RegisterOptions {
  /** The module that exports the class: a path relative to the working directory, or a URL. */
  module: string | URL;
  /** The name the class is exported under. */
  export: string;
}

function refOf(proxy: object, method: string): ProxyRef {
  const ref = proxyRefs.get(proxy);
  if (ref === undefined) {
    throw new TypeError(`Cannot call ${method}(): this proxy was not made by a manager`);
  }
  return ref;
}

function call<T>(proxy: object, method: string, args: unknown[]): Promise<T> {
  try {
    return refOf(proxy, method).call(method, args) as Promise<T>;
  } catch (error) {
    return Promise.reject(error);
  }
}

function callWaiting<T>(
  proxy: object,
  method: string,
  args: unknown[],
  options: ProxyWaitOptions | undefined,
): Promise<T> {
  try {
    const timeout = options?.timeout;
    if (timeout !== undefined && (typeof timeout !== "number" || Number.isNaN(timeout))) {
      throw new TypeError(`Cannot wait with timeout ${String(timeout)}: it must be a number`);
    }
    const ref = refOf(proxy, method);
    const wire = timeout === undefined ? undefined : { timeout };
    return ref.call(method, [...args, wire], { signal: options?.signal }) as Promise<T>;
  } catch (error) {
    return Promise.reject(error);
  }
}

/**
 * What every proxy has: its type name, and `dispose()` (or `using`) to give
 * up its reference. The object is freed once every proxy to it is disposed
 * (or collected), or when the manager shuts down.
 *
 * @example Free a shared object early
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   using list = await manager.list([1, 2]);
 *   console.log(list.typeid); // "list"
 * }
 * ```
 */
export class BaseProxy implements Disposable {
  /** The shared object's type: `"list"`, `"dict"`, or a registered typeid. */
  get typeid(): string {
    return refOf(this, "typeid").descriptor.typeid;
  }

  /** Gives up this proxy's reference; later calls on it fail with `ValueError`. */
  dispose(): void {
    const ref = proxyRefs.get(this);
    ref?.release();
  }

  /** Same as {@linkcode BaseProxy.dispose}. */
  [Symbol.dispose](): void {
    this.dispose();
  }
}
markHandleClass(BaseProxy, proxyKind);

/**
 * A proxy to a shared list (Python's `ListProxy`).
 *
 * @typeParam T The items' type.
 *
 * @example Append and read back
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const list = await manager.list([3, 1]);
 *   await list.append(2);
 *   await list.sort();
 *   console.log(await list.toArray()); // [ 1, 2, 3 ]
 * }
 * ```
 */
export class ListProxy<T = unknown> extends BaseProxy {
  /**
   * Adds an item at the end.
   *
   * @param item The item.
   * @returns When the server has it.
   */
  append(item: T): Promise<void> {
    return call(this, "append", [item]);
  }
  /**
   * Adds items at the end.
   *
   * @param items The items.
   * @returns When the server has them.
   */
  extend(items: Iterable<T>): Promise<void> {
    return call(this, "extend", [[...items]]);
  }
  /**
   * The item at an index; negative indexes count from the end.
   *
   * @param index The index.
   * @returns The item.
   * @throws {RangeError} The index is out of range.
   */
  get(index: number): Promise<T> {
    return call(this, "get", [index]);
  }
  /**
   * Replaces the item at an index.
   *
   * @param index The index; negative counts from the end.
   * @param item The new item.
   * @returns When done.
   * @throws {RangeError} The index is out of range.
   */
  set(index: number, item: T): Promise<void> {
    return call(this, "set", [index, item]);
  }
  /**
   * Inserts an item before an index, as Python's `list.insert`.
   *
   * @param index Where to insert.
   * @param item The item.
   * @returns When done.
   */
  insert(index: number, item: T): Promise<void> {
    return call(this, "insert", [index, item]);
  }
  /**
   * Removes and returns the item at an index (the last by default).
   *
   * @param index The index.
   * @returns The item.
   * @throws {RangeError} The list is empty or the index is out of range.
   */
  pop(index?: number): Promise<T> {
    return call(this, "pop", index === undefined ? [] : [index]);
  }
  /**
   * Removes the first item equal to a value (compared as Python's `==`).
   *
   * @param item The value.
   * @returns When done.
   * @throws {ValueError} No item is equal to it.
   */
  remove(item: T): Promise<void> {
    return call(this, "remove", [item]);
  }
  /**
   * The index of the first item equal to a value.
   *
   * @param item The value.
   * @param start Where to start looking.
   * @param end Where to stop looking.
   * @returns The index.
   * @throws {ValueError} No item is equal to it.
   */
  index(item: T, start?: number, end?: number): Promise<number> {
    const args: unknown[] = [item];
    if (start !== undefined || end !== undefined) args.push(start ?? 0);
    if (end !== undefined) args.push(end);
    return call(this, "index", args);
  }
  /**
   * How many items equal a value.
   *
   * @param item The value.
   * @returns The count.
   */
  count(item: T): Promise<number> {
    return call(this, "count", [item]);
  }
  /**
   * The number of items (Python's `len`).
   *
   * @returns The length.
   */
  length(): Promise<number> {
    return call(this, "length", []);
  }
  /**
   * A copy of part of the list (`list[start:end]`).
   *
   * @param start The first index; negative counts from the end.
   * @param end The index after the last; negative counts from the end.
   * @returns The items.
   */
  slice(start?: number, end?: number): Promise<T[]> {
    const args: unknown[] = [];
    if (start !== undefined || end !== undefined) args.push(start ?? 0);
    if (end !== undefined) args.push(end);
    return call(this, "slice", args);
  }
  /**
   * A copy of the whole list (Python's `list[:]`).
   *
   * @returns The items.
   */
  toArray(): Promise<T[]> {
    return call(this, "toArray", []);
  }
  /**
   * Reverses the list in place.
   *
   * @returns When done.
   */
  reverse(): Promise<void> {
    return call(this, "reverse", []);
  }
  /**
   * Sorts the list in place, in Python's order (numbers, strings, arrays
   * item by item; mixing kinds fails with `TypeError`).
   *
   * @param options `reverse: true` sorts from largest to smallest.
   * @returns When done.
   */
  sort(options?: { reverse?: boolean }): Promise<void> {
    return call(this, "sort", options === undefined ? [] : [{ reverse: options.reverse === true }]);
  }
  /**
   * Removes every item.
   *
   * @returns When done.
   */
  clear(): Promise<void> {
    return call(this, "clear", []);
  }
  /**
   * Yields the items of a snapshot taken when the iteration starts.
   *
   * @returns An async iterator over the items.
   */
  async *[Symbol.asyncIterator](): AsyncIterableIterator<T> {
    yield* await this.toArray();
  }
}

/**
 * A proxy to a shared dict (Python's `DictProxy`); keys are primitives.
 *
 * @typeParam K The keys' type.
 * @typeParam V The values' type.
 *
 * @example Set and get
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const dict = await manager.dict<string, number>({ a: 1 });
 *   await dict.set("b", 2);
 *   console.log(await dict.toObject()); // { a: 1, b: 2 }
 * }
 * ```
 */
export class DictProxy<K extends PropertyKey | bigint | boolean | null = string, V = unknown>
  extends BaseProxy {
  /**
   * The value of a key, or `defaultValue` when it is not there.
   *
   * @param key The key.
   * @param defaultValue What to return when the key is not there.
   * @returns The value.
   */
  get(key: K, defaultValue?: V): Promise<V | undefined> {
    return call(this, "get", defaultValue === undefined ? [key] : [key, defaultValue]);
  }
  /**
   * Sets a key's value.
   *
   * @param key The key.
   * @param value The value.
   * @returns When done.
   */
  set(key: K, value: V): Promise<void> {
    return call(this, "set", [key, value]);
  }
  /**
   * Whether a key is there.
   *
   * @param key The key.
   * @returns Whether it is there.
   */
  has(key: K): Promise<boolean> {
    return call(this, "has", [key]);
  }
  /**
   * Removes a key.
   *
   * @param key The key.
   * @returns Whether it was there.
   */
  delete(key: K): Promise<boolean> {
    return call(this, "delete", [key]);
  }
  /**
   * The keys, in insertion order.
   *
   * @returns The keys.
   */
  keys(): Promise<K[]> {
    return call(this, "keys", []);
  }
  /**
   * The values, in insertion order.
   *
   * @returns The values.
   */
  values(): Promise<V[]> {
    return call(this, "values", []);
  }
  /**
   * The `[key, value]` pairs, in insertion order.
   *
   * @returns The entries.
   */
  entries(): Promise<[K, V][]> {
    return call(this, "entries", []);
  }
  /**
   * Sets many keys at once.
   *
   * @param other An object, a Map, or `[key, value]` pairs.
   * @returns When done.
   */
  update(other: Record<string, V> | Map<K, V> | Iterable<[K, V]>): Promise<void> {
    const wire = other instanceof Map || Array.isArray(other) ||
        !(Symbol.iterator in Object(other))
      ? other
      : [...(other as Iterable<[K, V]>)];
    return call(this, "update", [wire]);
  }
  /**
   * The value of a key, set to `defaultValue` first when it is not there.
   *
   * @param key The key.
   * @param defaultValue The value to set when the key is not there.
   * @returns The value.
   */
  setdefault(key: K, defaultValue?: V): Promise<V> {
    return call(this, "setdefault", [key, defaultValue]);
  }
  /**
   * Removes a key and returns its value (or `defaultValue`).
   *
   * @param key The key.
   * @param defaultValue What to return when the key is not there.
   * @returns The value.
   * @throws {RangeError} The key is not there and no default was given.
   */
  pop(key: K, ...defaultValue: [] | [V]): Promise<V> {
    return call(this, "pop", [key, ...defaultValue]);
  }
  /**
   * Removes and returns the last inserted `[key, value]` pair.
   *
   * @returns The pair.
   * @throws {RangeError} The dict is empty.
   */
  popitem(): Promise<[K, V]> {
    return call(this, "popitem", []);
  }
  /**
   * Removes every key.
   *
   * @returns When done.
   */
  clear(): Promise<void> {
    return call(this, "clear", []);
  }
  /**
   * The number of keys (Python's `len`).
   *
   * @returns The size.
   */
  size(): Promise<number> {
    return call(this, "size", []);
  }
  /**
   * A plain-object copy (keys turned into strings).
   *
   * @returns The copy.
   */
  toObject(): Promise<Record<string, V>> {
    return call(this, "toObject", []);
  }
}

/**
 * A proxy to a shared namespace (Python's `Namespace`): named values.
 *
 * @example Read and write attributes
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const ns = await manager.namespace({ x: 1 });
 *   await ns.set("y", 2);
 *   console.log(await ns.toObject()); // { x: 1, y: 2 }
 * }
 * ```
 */
export class NamespaceProxy extends BaseProxy {
  /**
   * A value by name; `undefined` when not set.
   *
   * @param name The name.
   * @returns The value.
   */
  get<T = unknown>(name: string): Promise<T> {
    return call(this, "get", [name]);
  }
  /**
   * Sets a named value.
   *
   * @param name The name.
   * @param value The value.
   * @returns When done.
   */
  set(name: string, value: unknown): Promise<void> {
    return call(this, "set", [name, value]);
  }
  /**
   * Removes a named value.
   *
   * @param name The name.
   * @returns Whether it was set.
   */
  delete(name: string): Promise<boolean> {
    return call(this, "delete", [name]);
  }
  /**
   * Whether a name is set.
   *
   * @param name The name.
   * @returns Whether it is set.
   */
  has(name: string): Promise<boolean> {
    return call(this, "has", [name]);
  }
  /**
   * A plain-object copy of every named value.
   *
   * @returns The copy.
   */
  toObject<T extends Record<string, unknown> = Record<string, unknown>>(): Promise<T> {
    return call(this, "toObject", []);
  }
}

/**
 * A proxy to a queue kept by the manager (Python's `Manager().Queue()`).
 *
 * @typeParam T The items' type.
 *
 * @example Put and get
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const queue = await manager.Queue<string>();
 *   await queue.put("hello");
 *   console.log(await queue.get({ timeout: 1000 })); // "hello"
 * }
 * ```
 */
export class QueueProxy<T = unknown> extends BaseProxy {
  /**
   * Puts an item, waiting while the queue is full.
   *
   * @param item The item.
   * @param options How long to wait.
   * @returns When the item is in the queue.
   * @throws {Full} The queue stayed full for `timeout` ms.
   */
  put(item: T, options?: ProxyWaitOptions): Promise<void> {
    return callWaiting(this, "put", [item], options);
  }
  /**
   * Puts an item if there is room now.
   *
   * @param item The item.
   * @returns When the item is in the queue.
   * @throws {Full} The queue is full.
   */
  putNowait(item: T): Promise<void> {
    return call(this, "putNowait", [item]);
  }
  /**
   * Takes the next item, waiting while the queue is empty.
   *
   * @param options How long to wait.
   * @returns The item.
   * @throws {Empty} The queue stayed empty for `timeout` ms.
   */
  get(options?: ProxyWaitOptions): Promise<T> {
    return callWaiting(this, "get", [], options);
  }
  /**
   * Takes the next item if there is one now.
   *
   * @returns The item.
   * @throws {Empty} The queue is empty.
   */
  getNowait(): Promise<T> {
    return call(this, "getNowait", []);
  }
  /**
   * The number of items.
   *
   * @returns The size.
   */
  qsize(): Promise<number> {
    return call(this, "qsize", []);
  }
  /**
   * Whether the queue is empty.
   *
   * @returns Whether it is empty.
   */
  empty(): Promise<boolean> {
    return call(this, "empty", []);
  }
  /**
   * Whether the queue is full.
   *
   * @returns Whether it is full.
   */
  full(): Promise<boolean> {
    return call(this, "full", []);
  }
}

/**
 * A proxy to a joinable queue kept by the manager.
 *
 * @typeParam T The items' type.
 *
 * @example Wait until every item is done
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const queue = await manager.JoinableQueue<number>();
 *   await queue.put(1);
 *   await queue.get();
 *   await queue.taskDone();
 *   await queue.join();
 * }
 * ```
 */
export class JoinableQueueProxy<T = unknown> extends QueueProxy<T> {
  /**
   * Marks one item taken with `get` as done.
   *
   * @returns When counted.
   * @throws {ValueError} Called more times than items were put.
   */
  taskDone(): Promise<void> {
    return call(this, "taskDone", []);
  }
  /**
   * Waits until every item put has been marked done.
   *
   * @returns When all are done.
   */
  join(): Promise<void> {
    return call(this, "join", []);
  }
}

/**
 * A proxy to a shared number (Python's `Manager().Value()`), wrapping as its
 * typecode's C type does.
 *
 * @typeParam T `number`, or `bigint` for the 64-bit integer typecodes.
 *
 * @example Increment
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const value = await manager.Value("i", 1);
 *   await value.set((await value.get()) + 1);
 *   console.log(await value.get()); // 2
 * }
 * ```
 */
export class ValueProxy<T extends number | bigint = number> extends BaseProxy {
  /**
   * The value.
   *
   * @returns The value.
   */
  get(): Promise<T> {
    return call(this, "get", []);
  }
  /**
   * Sets the value.
   *
   * @param value The new value.
   * @returns When done.
   */
  set(value: T): Promise<void> {
    return call(this, "set", [value]);
  }
}

/**
 * A proxy to a shared array of numbers (Python's `Manager().Array()`).
 *
 * @typeParam T `number`, or `bigint` for the 64-bit integer typecodes.
 *
 * @example Read and write items
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const array = await manager.Array("d", [1, 2, 3]);
 *   await array.set(-1, 4);
 *   console.log(await array.toArray()); // [ 1, 2, 4 ]
 * }
 * ```
 */
export class ArrayProxy<T extends number | bigint = number> extends BaseProxy {
  /**
   * The item at an index; negative indexes count from the end.
   *
   * @param index The index.
   * @returns The item.
   * @throws {RangeError} The index is out of range.
   */
  get(index: number): Promise<T> {
    return call(this, "get", [index]);
  }
  /**
   * Sets the item at an index.
   *
   * @param index The index.
   * @param value The new value.
   * @returns When done.
   * @throws {RangeError} The index is out of range.
   */
  set(index: number, value: T): Promise<void> {
    return call(this, "set", [index, value]);
  }
  /**
   * A copy of every item.
   *
   * @returns The items.
   */
  toArray(): Promise<T[]> {
    return call(this, "toArray", []);
  }
  /**
   * The number of items.
   *
   * @returns The length.
   */
  length(): Promise<number> {
    return call(this, "length", []);
  }
}

function holdOf(
  proxy: { acquire(o?: ProxyWaitOptions): Promise<boolean>; release(): Promise<void> },
  what: string,
  options: ProxyWaitOptions | undefined,
): Promise<Disposable & AsyncDisposable> {
  return proxy.acquire(options).then((ok) => {
    if (!ok) {
      throw new TimeoutError(`Cannot acquire ${what} within ${options?.timeout} ms: it is held`);
    }
    let done: Promise<void> | undefined;
    const release = () => done ??= proxy.release();
    return {
      [Symbol.dispose]: () => void release().catch(() => {}),
      [Symbol.asyncDispose]: release,
    };
  });
}

/**
 * A proxy to a manager's `Lock` or `RLock`. The owner is the process or
 * worker that acquired it; if its connection closes, the lock is released.
 *
 * @example Hold a lock for a block
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const lock = await manager.Lock();
 *   {
 *     await using _ = await lock.hold();
 *   }
 *   console.log(await lock.acquire({ timeout: 0 })); // true
 * }
 * ```
 */
export class LockProxy extends BaseProxy {
  /**
   * Acquires the lock.
   *
   * @param options How long to wait.
   * @returns `true`, or `false` when the time ran out.
   */
  acquire(options?: ProxyWaitOptions): Promise<boolean> {
    return callWaiting(this, "acquire", [], options);
  }
  /**
   * Releases the lock.
   *
   * @returns When released.
   * @throws {ValueError} It is not locked (or, for an RLock, not held by this process).
   */
  release(): Promise<void> {
    return call(this, "release", []);
  }
  /**
   * Whether the lock is held by anyone.
   *
   * @returns Whether it is held.
   */
  locked(): Promise<boolean> {
    return call(this, "locked", []);
  }
  /**
   * Acquires the lock, for `using _ = await lock.hold()`.
   *
   * @param options How long to wait.
   * @returns A disposable that releases the lock.
   * @throws {TimeoutError} The time ran out.
   */
  hold(options?: ProxyWaitOptions): Promise<Disposable & AsyncDisposable> {
    return holdOf(this, "lock", options);
  }
}

/**
 * A proxy to a manager's `Semaphore` or `BoundedSemaphore`.
 *
 * @example Limit concurrency
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const sem = await manager.Semaphore(2);
 *   await sem.acquire();
 *   console.log(await sem.getValue()); // 1
 *   await sem.release();
 * }
 * ```
 */
export class SemaphoreProxy extends BaseProxy {
  /**
   * Takes one unit, waiting while there is none.
   *
   * @param options How long to wait.
   * @returns `true`, or `false` when the time ran out.
   */
  acquire(options?: ProxyWaitOptions): Promise<boolean> {
    return callWaiting(this, "acquire", [], options);
  }
  /**
   * Gives one unit back.
   *
   * @returns When done.
   * @throws {ValueError} A BoundedSemaphore released past its start value.
   */
  release(): Promise<void> {
    return call(this, "release", []);
  }
  /**
   * The units left.
   *
   * @returns The value.
   */
  getValue(): Promise<number> {
    return call(this, "getValue", []);
  }
  /**
   * Takes one unit, for `using _ = await sem.hold()`.
   *
   * @param options How long to wait.
   * @returns A disposable that gives it back.
   * @throws {TimeoutError} The time ran out.
   */
  hold(options?: ProxyWaitOptions): Promise<Disposable & AsyncDisposable> {
    return holdOf(this, "semaphore", options);
  }
}

/**
 * A proxy to a manager's `Event`.
 *
 * @example Set and wait
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const event = await manager.Event();
 *   await event.set();
 *   console.log(await event.wait({ timeout: 1000 })); // true
 * }
 * ```
 */
export class EventProxy extends BaseProxy {
  /**
   * Sets the flag and wakes every waiter.
   *
   * @returns When done.
   */
  set(): Promise<void> {
    return call(this, "set", []);
  }
  /**
   * Clears the flag.
   *
   * @returns When done.
   */
  clear(): Promise<void> {
    return call(this, "clear", []);
  }
  /**
   * Whether the flag is set.
   *
   * @returns The flag.
   */
  isSet(): Promise<boolean> {
    return call(this, "isSet", []);
  }
  /**
   * Waits until the flag is set.
   *
   * @param options How long to wait.
   * @returns `true`, or `false` when the time ran out.
   */
  wait(options?: ProxyWaitOptions): Promise<boolean> {
    return callWaiting(this, "wait", [], options);
  }
}

/**
 * A proxy to a manager's `Condition`.
 *
 * @example Wait for a notification
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const cond = await manager.Condition();
 *   await cond.acquire();
 *   console.log(await cond.wait({ timeout: 10 })); // false: nobody notified
 *   await cond.release();
 * }
 * ```
 */
export class ConditionProxy extends BaseProxy {
  /**
   * Acquires the condition's lock.
   *
   * @param options How long to wait.
   * @returns `true`, or `false` when the time ran out.
   */
  acquire(options?: ProxyWaitOptions): Promise<boolean> {
    return callWaiting(this, "acquire", [], options);
  }
  /**
   * Releases the condition's lock.
   *
   * @returns When released.
   */
  release(): Promise<void> {
    return call(this, "release", []);
  }
  /**
   * Acquires the lock, for `await using _ = await cond.hold()`.
   *
   * @param options How long to wait.
   * @returns A disposable that releases the lock.
   * @throws {TimeoutError} The time ran out.
   */
  hold(options?: ProxyWaitOptions): Promise<Disposable & AsyncDisposable> {
    return holdOf(this, "condition", options);
  }
  /**
   * Releases the lock, waits for a notification, then takes the lock again.
   *
   * @param options How long to wait.
   * @returns `true` when notified, `false` when the time ran out.
   * @throws {ValueError} The lock is not held by this process.
   */
  wait(options?: ProxyWaitOptions): Promise<boolean> {
    return callWaiting(this, "wait", [], options);
  }
  /**
   * Waits until `predicate()` is true, checking it here after each notification.
   *
   * @param predicate What to wait for.
   * @param options How long to wait in all.
   * @returns The predicate's last result.
   */
  async waitFor<R>(predicate: () => R | Promise<R>, options?: ProxyWaitOptions): Promise<R> {
    const deadline = options?.timeout === undefined ? undefined : Date.now() + options.timeout;
    let result = await predicate();
    while (!result) {
      const left = deadline === undefined ? undefined : deadline - Date.now();
      if (left !== undefined && left <= 0) break;
      await this.wait({ ...options, ...(left !== undefined ? { timeout: left } : {}) });
      result = await predicate();
    }
    return result;
  }
  /**
   * Wakes up to `n` waiters.
   *
   * @param n How many.
   * @returns When done.
   */
  notify(n = 1): Promise<void> {
    return call(this, "notify", [n]);
  }
  /**
   * Wakes every waiter.
   *
   * @returns When done.
   */
  notifyAll(): Promise<void> {
    return call(this, "notifyAll", []);
  }
}

/**
 * A proxy to a manager's `Barrier`.
 *
 * @example Two parties meet
 * ```ts
 * import { Manager } from "@seed/multiprocessing";
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const barrier = await manager.Barrier(2);
 *   console.log(await Promise.all([barrier.wait(), barrier.wait()])); // [ 0, 1 ]
 * }
 * ```
 */
export class BarrierProxy extends BaseProxy {
  /**
   * Waits until `parties` callers wait.
   *
   * @param options How long to wait; when the time runs out, the barrier breaks.
   * @returns This caller's arrival index, from 0.
   * @throws {BrokenBarrierError} The barrier broke (aborted, reset or timed out).
   */
  wait(options?: ProxyWaitOptions): Promise<number> {
    return callWaiting(this, "wait", [], options);
  }
  /**
   * Breaks the barrier: waiters and later callers fail.
   *
   * @returns When done.
   */
  abort(): Promise<void> {
    return call(this, "abort", []);
  }
  /**
   * Fails the current waiters and makes the barrier usable again.
   *
   * @returns When done.
   */
  reset(): Promise<void> {
    return call(this, "reset", []);
  }
  /**
   * How many callers it waits for.
   *
   * @returns The parties.
   */
  parties(): Promise<number> {
    return call(this, "parties", []);
  }
  /**
   * How many callers are waiting.
   *
   * @returns The count.
   */
  nWaiting(): Promise<number> {
    return call(this, "nWaiting", []);
  }
  /**
   * Whether the barrier is broken.
   *
   * @returns Whether it is broken.
   */
  broken(): Promise<boolean> {
    return call(this, "broken", []);
  }
}

/**
 * A proxy to a registered type's instance: each method of `T` becomes an
 * async method that runs on the server.
 *
 * @typeParam T The class's instance type.
 */
export type AutoProxy<T> =
  & BaseProxy
  & {
    [K in keyof T as T[K] extends (...args: never[]) => unknown ? K : never]: T[K] extends
      (...args: infer A) => infer R ? (...args: A) => Promise<Awaited<R>> : never;
  };

const CLASSES: Record<string, typeof BaseProxy> = {
  list: ListProxy,
  dict: DictProxy,
  namespace: NamespaceProxy,
  Queue: QueueProxy,
  JoinableQueue: JoinableQueueProxy,
  Value: ValueProxy,
  Array: ArrayProxy,
  Lock: LockProxy,
  RLock: LockProxy,
  Semaphore: SemaphoreProxy,
  BoundedSemaphore: SemaphoreProxy,
  Event: EventProxy,
  Condition: ConditionProxy,
  Barrier: BarrierProxy,
};

hooks.makeProxy = (ref) => {
  const d = ref.descriptor;
  const cls = d.methods === undefined ? CLASSES[d.typeid] ?? BaseProxy : BaseProxy;
  const proxy = Object.create(cls.prototype) as BaseProxy;
  attach(proxy, ref);
  for (const method of d.methods ?? []) {
    if (method in proxy) continue;
    Object.defineProperty(proxy, method, {
      value: (...args: unknown[]) => call(proxy, method, args),
      configurable: true,
    });
  }
  return proxy;
};

const registry = new Map<string, TypeSpec>();
// Temp dirs of managers not shut down yet: removed when this program exits.
const liveDirs = new Set<string>();
let unloadHooked = false;

function trackDir(dir: string): void {
  liveDirs.add(dir);
  if (unloadHooked) return;
  unloadHooked = true;
  globalThis.addEventListener("unload", () => {
    for (const dir of liveDirs) {
      try {
        Deno.removeSync(dir, { recursive: true });
      } catch { /* gone */ }
    }
  });
}
let counter = 0;

function validAddress(address: unknown, what: string): { hostname: string; port: number } {
  const a = address as { hostname?: unknown; port?: unknown } | undefined;
  if (
    typeof a !== "object" || a === null || typeof a.hostname !== "string" ||
    typeof a.port !== "number" || !Number.isInteger(a.port)
  ) {
    throw new TypeError(`Cannot ${what}: address must be { hostname: string, port: number }`);
  }
  if (a.port < 0 || a.port > 65535) {
    throw new RangeError(`Cannot ${what}: port ${a.port} is out of range 0-65535`);
  }
  return { hostname: a.hostname, port: a.port };
}

async function acceptReady(
  listener: Deno.Listener,
  process: ServerProcess,
): Promise<{ ok: boolean; address?: Address; error?: unknown }> {
  const exited = exits.get(process);
  let conn: Deno.Conn | undefined;
  const accepting = listener.accept().then((c) => conn = c);
  const winner = await Promise.race([
    accepting.then(() => "ready" as const),
    (exited ?? new Promise<never>(() => {})).then(() => "exited" as const),
  ]);
  if (winner === "exited" && conn === undefined) {
    listener.close();
    await accepting.catch(() => {});
    throw new ProcessError(
      `Cannot start the manager: its server exited with code ${process.exitCode} before it was ready`,
    );
  }
  await accepting;
  try {
    const frame = await new FrameReader(conn!, 1 << 20).next();
    if (frame === null) throw new ProcessError("Cannot start the manager: its server said nothing");
    return decode(frame) as { ok: boolean; address?: Address; error?: unknown };
  } finally {
    conn!.close();
  }
}

/**
 * A manager: a server that owns shared objects, and the factories that make
 * them (Python's `SyncManager`). `await Manager.start()` starts one;
 * `await Manager.connect(address, { authkey })` joins one that serves over
 * TCP. Disposing an owner shuts its server down; disposing a connected client
 * only disconnects it.
 *
 * @example Share a list with a child process
 * ```ts
 * import { type ListProxy, Manager, Process } from "@seed/multiprocessing";
 *
 * export async function record(list: ListProxy<string>) {
 *   await list.append("from the child");
 * }
 *
 * if (import.meta.main) {
 *   await using manager = await Manager.start();
 *   const list = await manager.list<string>();
 *   const child = new Process({ target: record, args: [list] });
 *   await child.start();
 *   await child.join();
 *   console.log(await list.toArray()); // [ "from the child" ]
 * }
 * ```
 */
export class Manager implements AsyncDisposable {
  #endpoint: Endpoint;
  #process: ServerProcess | undefined;
  #dir: string | undefined;
  #shutdown: Promise<void> | undefined;

  /**
   * Use {@linkcode Manager.start} or {@linkcode Manager.connect}.
   *
   * @param token An internal token: calling `new Manager()` throws.
   * @throws {TypeError} Always, from user code.
   */
  constructor(token: never) {
    const state = token as unknown as {
      endpoint?: Endpoint;
      process?: ServerProcess;
      dir?: string;
    };
    if (state === undefined || state.endpoint === undefined || !creating) {
      throw new TypeError(
        "Cannot make a Manager with new: use await Manager.start() or await Manager.connect()",
      );
    }
    this.#endpoint = state.endpoint;
    this.#process = state.process;
    this.#dir = state.dir;
  }

  /**
   * Makes an exported class a shared type: `manager.create(typeid, ...args)`
   * then makes instances on the server. Register before `start()`: a server
   * knows the types registered when it started. Its public methods (names
   * not starting with `_`) can be called through the proxy.
   *
   * @param typeid The type's name.
   * @param options Where the class is exported.
   * @throws {TypeError} The typeid is a built-in one, or the options are malformed.
   *
   * @example Register a class
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * export class Counter {
   *   n = 0;
   *   increment() {
   *     return ++this.n;
   *   }
   * }
   *
   * Manager.register("Counter", { module: import.meta.url, export: "Counter" });
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const counter = await manager.create<Counter>("Counter");
   *   console.log(await counter.increment()); // 1
   * }
   * ```
   */
  static register(typeid: string, options: RegisterOptions): void {
    if (typeof typeid !== "string" || typeid === "") {
      throw new TypeError("Cannot register a type: typeid must be a non-empty string");
    }
    if (Object.hasOwn(CLASSES, typeid)) {
      throw new TypeError(`Cannot register type "${typeid}": the name is a built-in type's`);
    }
    const { module, export: exportName } = options ?? {};
    if (typeof module !== "string" && !(module instanceof URL)) {
      throw new TypeError(`Cannot register type "${typeid}": module must be a string or URL`);
    }
    if (typeof exportName !== "string" || exportName === "") {
      throw new TypeError(`Cannot register type "${typeid}": export must name the class`);
    }
    registry.set(typeid, { typeid, module: moduleUrl(module), exportName });
  }

  /**
   * Starts a manager's server and connects to it.
   *
   * @param options The start method, and a TCP address, key and TLS files to serve remotely.
   * @returns The manager, owning its server.
   * @throws {TypeError} The options are malformed.
   * @throws {ProcessError} The server could not start (the message says why).
   *
   * @example Start and shut down
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   const manager = await Manager.start({ startMethod: "worker" });
   *   await manager.shutdown();
   * }
   * ```
   */
  static async start(options: ManagerStartOptions = {}): Promise<Manager> {
    if (typeof options !== "object" || options === null) {
      throw new TypeError("Cannot start a manager: options must be an object");
    }
    const startMethod = options.startMethod === undefined
      ? "process"
      : validateStartMethod(options.startMethod);
    const tcp = options.address === undefined
      ? undefined
      : validAddress(options.address, "start a manager");
    const authkey = options.authkey === undefined
      ? crypto.getRandomValues(new Uint8Array(32))
      : toAuthkey(options.authkey, "start a manager");
    let tls: ServeConfig["tls"];
    let caCerts: string[] = [];
    if (options.tls !== undefined) {
      if (tcp === undefined) {
        throw new TypeError("Cannot start a manager with tls: give a TCP address too");
      }
      const { certFile, keyFile, caFile } = options.tls;
      tls = { cert: await Deno.readTextFile(certFile), key: await Deno.readTextFile(keyFile) };
      caCerts = [caFile === undefined ? tls.cert : await Deno.readTextFile(caFile)];
    }
    const dir = makeSocketDir("seed-mp-manager-");
    trackDir(dir);
    const readyPath = `${dir}/ready.sock`;
    let process: ServerProcess | undefined;
    try {
      const listener = Deno.listen({ transport: "unix", path: readyPath });
      const config: ServeConfig = {
        server: crypto.randomUUID(),
        address: tcp ?? `${dir}/manager.sock`,
        authkey,
        tls,
        ready: readyPath,
        types: [...registry.values()],
      };
      const server: ServerProcess = new Process({
        target: serveManager,
        module: SERVER_MODULE,
        args: [config],
        daemon: true,
        startMethod,
        name: `Manager-${++counter}`,
      });
      process = server;
      let answer;
      try {
        await server.start();
        answer = await acceptReady(listener, server);
      } finally {
        try {
          listener.close();
        } catch { /* closed */ }
      }
      if (!answer.ok) {
        await server.join();
        const error = answer.error;
        throw new ProcessError(
          `Cannot start the manager: ${error instanceof Error ? error.message : String(error)}`,
          { cause: error },
        );
      }
      let address = answer.address!;
      if (typeof address !== "string" && ["0.0.0.0", "::", "[::]"].includes(address.hostname)) {
        address = { hostname: "127.0.0.1", port: address.port };
      }
      const endpoint: Endpoint = {
        address,
        authkey,
        ...(tls !== undefined ? { tls: { caCerts } } : {}),
      };
      await channelFor(endpoint).opened;
      return make({ endpoint, process: server, dir });
    } catch (error) {
      if (process?.isAlive()) {
        process.kill();
        await process.join();
      }
      await Deno.remove(dir, { recursive: true }).catch(() => {});
      liveDirs.delete(dir);
      throw error;
    }
  }

  /**
   * Joins a manager that serves over TCP, from any process or machine.
   *
   * @param address The manager's host and port.
   * @param options The key, and TLS.
   * @returns A client: disposing it disconnects and leaves the server running.
   * @throws {AuthenticationError} The key is wrong.
   * @throws {ProcessError} Nothing answers at the address.
   *
   * @example Join a remote manager
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using remote = await Manager.connect(
   *     { hostname: "127.0.0.1", port: 50000 },
   *     { authkey: "secret" },
   *   );
   *   const queue = await remote.lookup("jobs");
   *   console.log(queue.typeid);
   * }
   * ```
   */
  static async connect(
    address: { hostname: string; port: number },
    options: ManagerConnectOptions,
  ): Promise<Manager> {
    const tcp = validAddress(address, "connect to a manager");
    if (typeof options !== "object" || options === null || options.authkey === undefined) {
      throw new TypeError("Cannot connect to a manager: pass { authkey }");
    }
    const authkey = toAuthkey(options.authkey, "connect to a manager");
    let tls: Endpoint["tls"];
    if (options.tls === true) tls = { caCerts: [] };
    else if (typeof options.tls === "object" && options.tls !== null) {
      tls = { caCerts: [await Deno.readTextFile(options.tls.caFile)] };
    }
    const endpoint: Endpoint = { address: tcp, authkey, ...(tls !== undefined ? { tls } : {}) };
    const channel = channelFor(endpoint);
    await channel.opened;
    return make({ endpoint });
  }

  /**
   * Where the server listens: a Unix socket path, or the TCP host and port
   * (the real port when 0 was asked).
   *
   * @returns The address.
   */
  get address(): ManagerAddress {
    const a = this.#endpoint.address;
    return typeof a === "string" ? a : { ...a };
  }

  /**
   * The key clients must know (a copy).
   *
   * @returns The key's bytes.
   */
  get authkey(): Uint8Array {
    return this.#endpoint.authkey.slice();
  }

  #create<P>(typeid: string, args: unknown[]): Promise<P> {
    try {
      return channelFor(this.#endpoint).request(0, "create", [typeid, args]) as Promise<P>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Makes a shared list.
   *
   * @typeParam T The items' type.
   * @param initial The first items.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const list = await manager.list(["a"]);
   *   console.log(await list.length()); // 1
   * }
   * ```
   */
  list<T = unknown>(initial?: Iterable<T>): Promise<ListProxy<T>> {
    return this.#create("list", initial === undefined ? [] : [[...initial]]);
  }

  /**
   * Makes a shared dict.
   *
   * @typeParam K The keys' type.
   * @typeParam V The values' type.
   * @param initial The first entries: an object, a Map, or `[key, value]` pairs.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const dict = await manager.dict({ a: 1 });
   *   console.log(await dict.get("a")); // 1
   * }
   * ```
   */
  dict<K extends PropertyKey | bigint | boolean | null = string, V = unknown>(
    initial?: Record<string, V> | Map<K, V> | Iterable<[K, V]>,
  ): Promise<DictProxy<K, V>> {
    if (initial === undefined) return this.#create("dict", []);
    const wire = initial instanceof Map || Array.isArray(initial) ||
        !(Symbol.iterator in Object(initial))
      ? initial
      : [...(initial as Iterable<[K, V]>)];
    return this.#create("dict", [wire]);
  }

  /**
   * Makes a shared namespace.
   *
   * @param initial The first named values.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const ns = await manager.namespace({ x: 1 });
   *   console.log(await ns.get("x")); // 1
   * }
   * ```
   */
  namespace(initial?: Record<string, unknown>): Promise<NamespaceProxy> {
    return this.#create("namespace", initial === undefined ? [] : [initial]);
  }

  /**
   * Makes a queue kept by the server.
   *
   * @typeParam T The items' type.
   * @param maxsize The most items it holds; `0` or less is unbounded.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const queue = await manager.Queue<number>(1);
   *   await queue.put(1);
   *   console.log(await queue.full()); // true
   * }
   * ```
   */
  Queue<T = unknown>(maxsize = 0): Promise<QueueProxy<T>> {
    return this.#create("Queue", [maxsize]);
  }

  /**
   * Makes a joinable queue kept by the server.
   *
   * @typeParam T The items' type.
   * @param maxsize The most items it holds; `0` or less is unbounded.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const queue = await manager.JoinableQueue<number>();
   *   await queue.join(); // nothing was put
   * }
   * ```
   */
  JoinableQueue<T = unknown>(maxsize = 0): Promise<JoinableQueueProxy<T>> {
    return this.#create("JoinableQueue", [maxsize]);
  }

  /**
   * Makes a shared number.
   *
   * @typeParam C The typecode: its values are `bigint` for `l L q Q`, else `number`.
   * @param typecode One of `b B h H i I l L q Q f d`.
   * @param value The start value.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const value = await manager.Value("d", 0.5);
   *   console.log(await value.get()); // 0.5
   * }
   * ```
   */
  Value<C extends Typecode>(typecode: C, value?: ElementOf<C>): Promise<ValueProxy<ElementOf<C>>> {
    return this.#create("Value", value === undefined ? [typecode] : [typecode, value]);
  }

  /**
   * Makes a shared array of numbers.
   *
   * @typeParam C The typecode: its values are `bigint` for `l L q Q`, else `number`.
   * @param typecode One of `b B h H i I l L q Q f d`.
   * @param sizeOrValues A length (zero-filled) or the items.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const array = await manager.Array("i", 3);
   *   console.log(await array.toArray()); // [ 0, 0, 0 ]
   * }
   * ```
   */
  Array<C extends Typecode>(
    typecode: C,
    sizeOrValues: number | Iterable<ElementOf<C>>,
  ): Promise<ArrayProxy<ElementOf<C>>> {
    const wire = typeof sizeOrValues === "number" ? sizeOrValues : [...sizeOrValues];
    return this.#create("Array", [typecode, wire]);
  }

  /**
   * Makes a lock.
   *
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const lock = await manager.Lock();
   *   await lock.acquire();
   *   await lock.release();
   * }
   * ```
   */
  Lock(): Promise<LockProxy> {
    return this.#create("Lock", []);
  }

  /**
   * Makes a re-entrant lock, owned by the process or worker that acquired it.
   *
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const lock = await manager.RLock();
   *   await lock.acquire();
   *   await lock.acquire();
   *   await lock.release();
   *   await lock.release();
   * }
   * ```
   */
  RLock(): Promise<LockProxy> {
    return this.#create("RLock", []);
  }

  /**
   * Makes a semaphore.
   *
   * @param value The start value.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const sem = await manager.Semaphore(0);
   *   console.log(await sem.acquire({ timeout: 0 })); // false
   * }
   * ```
   */
  Semaphore(value = 1): Promise<SemaphoreProxy> {
    return this.#create("Semaphore", [value]);
  }

  /**
   * Makes a semaphore that refuses releases past its start value.
   *
   * @param value The start value.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const sem = await manager.BoundedSemaphore(1);
   *   await sem.release().catch((e) => console.log(e.name)); // ValueError
   * }
   * ```
   */
  BoundedSemaphore(value = 1): Promise<SemaphoreProxy> {
    return this.#create("BoundedSemaphore", [value]);
  }

  /**
   * Makes an event.
   *
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const event = await manager.Event();
   *   console.log(await event.isSet()); // false
   * }
   * ```
   */
  Event(): Promise<EventProxy> {
    return this.#create("Event", []);
  }

  /**
   * Makes a condition variable.
   *
   * @param lock A `Lock` or `RLock` of this manager to use; a new RLock by default.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const cond = await manager.Condition(await manager.RLock());
   *   await cond.acquire();
   *   await cond.notifyAll();
   *   await cond.release();
   * }
   * ```
   */
  Condition(lock?: LockProxy): Promise<ConditionProxy> {
    return this.#create("Condition", lock === undefined ? [] : [lock]);
  }

  /**
   * Makes a barrier.
   *
   * @param parties How many callers it waits for.
   * @param options `timeout`: the default wait, in ms.
   * @returns A proxy to it.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const barrier = await manager.Barrier(1);
   *   console.log(await barrier.wait()); // 0
   * }
   * ```
   */
  Barrier(parties: number, options?: { timeout?: number }): Promise<BarrierProxy> {
    return this.#create("Barrier", options === undefined ? [parties] : [parties, options]);
  }

  /**
   * Makes an instance of a registered type on the server.
   *
   * @typeParam T The class's instance type.
   * @param typeid The name given to {@linkcode Manager.register}.
   * @param args The constructor's arguments.
   * @returns A proxy whose methods call the instance's.
   * @throws {TypeError} The type is not registered with this manager.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * export class Greeter {
   *   greet(name: string) {
   *     return `hello ${name}`;
   *   }
   * }
   *
   * Manager.register("Greeter", { module: import.meta.url, export: "Greeter" });
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   const greeter = await manager.create<Greeter>("Greeter");
   *   console.log(await greeter.greet("bob"));
   * }
   * ```
   */
  create<T extends object = Record<string, unknown>>(
    typeid: string,
    ...args: unknown[]
  ): Promise<AutoProxy<T>> {
    if (typeof typeid !== "string") {
      return Promise.reject(new TypeError("Cannot create an object: typeid must be a string"));
    }
    return this.#create(typeid, args);
  }

  /**
   * Shares a proxy under a name, for others to {@linkcode Manager.lookup}.
   *
   * @param name The name.
   * @param proxy A proxy made by this manager.
   * @returns When the name is set.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   await manager.expose("jobs", await manager.Queue());
   *   const jobs = await manager.lookup("jobs");
   *   console.log(jobs.typeid); // "Queue"
   * }
   * ```
   */
  expose(name: string, proxy: BaseProxy): Promise<void> {
    try {
      return channelFor(this.#endpoint).request(0, "expose", [name, proxy]) as Promise<void>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * A proxy to an object shared under a name.
   *
   * @typeParam P The proxy's type.
   * @param name The name.
   * @returns A new proxy to it.
   * @throws {ValueError} Nothing is exposed under that name.
   *
   * @example
   * ```ts
   * import { Manager, type QueueProxy } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   await using manager = await Manager.start();
   *   await manager.expose("q", await manager.Queue());
   *   const q = await manager.lookup<QueueProxy<number>>("q");
   *   await q.put(1);
   * }
   * ```
   */
  lookup<P extends BaseProxy = BaseProxy>(name: string): Promise<P> {
    try {
      return channelFor(this.#endpoint).request(0, "lookup", [name]) as Promise<P>;
    } catch (error) {
      return Promise.reject(error);
    }
  }

  /**
   * Stops the server and frees every object it owns (owner), or disconnects
   * (a connected client). Idempotent.
   *
   * @returns When done.
   *
   * @example
   * ```ts
   * import { Manager } from "@seed/multiprocessing";
   *
   * if (import.meta.main) {
   *   const manager = await Manager.start();
   *   await manager.shutdown();
   * }
   * ```
   */
  shutdown(): Promise<void> {
    return this.#shutdown ??= this.#stop();
  }

  async #stop(): Promise<void> {
    const process = this.#process;
    if (process === undefined) {
      closeChannel(this.#endpoint, false);
      return;
    }
    try {
      const channel = channelFor(this.#endpoint);
      let timer: ReturnType<typeof setTimeout> | undefined;
      await Promise.race([
        channel.request(0, "shutdown", []).catch(() => {}),
        new Promise((resolve) => timer = setTimeout(resolve, 5_000)),
      ]);
      if (timer !== undefined) clearTimeout(timer);
    } catch { /* already unreachable */ }
    closeChannel(this.#endpoint, true);
    await process.join({ timeout: 5_000 });
    if (process.isAlive()) {
      process.kill();
      await process.join();
    }
    process.close();
    if (this.#dir !== undefined) {
      await Deno.remove(this.#dir, { recursive: true }).catch(() => {});
      liveDirs.delete(this.#dir);
    }
  }

  /** Same as {@linkcode Manager.shutdown}. */
  [Symbol.asyncDispose](): Promise<void> {
    return this.shutdown();
  }
}

let creating = false;
function make(state: { endpoint: Endpoint; process?: ServerProcess; dir?: string }): Manager {
  creating = true;
  try {
    return new Manager(state as never);
  } finally {
    creating = false;
  }
}
