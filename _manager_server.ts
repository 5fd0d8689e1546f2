// A manager's server: runs in its own process or worker, listens on a Unix
// socket or TCP (optionally TLS), authenticates each connection with a mutual
// HMAC challenge, then answers requests. It owns the objects and counts the
// references to each; nothing received is run as code (the codec rebuilds
// data only, and only listed methods can be called).
import { decode, encode, encodeView } from "./_codec.ts";
import { markHandleClass } from "./_handles.ts";
import { type Lane, offerLane, Spinner } from "./_lane.ts";
import { nextTurn } from "./_socket.ts";
import {
  type Address,
  answerChallenge,
  attach,
  deliverChallenge,
  type Endpoint,
  HANDSHAKE_TIMEOUT,
  hooks,
  Outbox,
  type ProxyDescriptor,
  proxyKind,
  ProxyRef,
} from "./_manager_client.ts";
import {
  type CallContext,
  type Shared,
  SharedArrayObject,
  SharedBarrier,
  SharedCondition,
  SharedDict,
  SharedEvent,
  SharedJoinableQueue,
  SharedList,
  SharedLock,
  SharedNamespace,
  SharedQueue,
  SharedSemaphore,
  SharedValue,
} from "./_manager_types.ts";
import { FrameReader, FrameWriter } from "./_wire.ts";
import { ValueError } from "./errors.ts";

/** A custom type: a class exported from a module. */
export interface TypeSpec {
  typeid: string;
  module: string;
  exportName: string;
}

/** What the server is started with. */
export interface ServeConfig {
  /** The instance id stamped on its proxies. */
  server: string;
  address: Address;
  authkey: Uint8Array;
  /** PEM certificate chain and key: serve TCP over TLS. */
  tls?: { cert: string; key: string } | undefined;
  /** A Unix socket of the starter's, told the real address once listening. */
  ready: string;
  types: TypeSpec[];
}

// Above this many unwritten answer bytes, stop reading that connection's requests.
const HIGH_WATER = 1 << 22;

const BUILTIN: Record<string, { methods: Set<string>; make: (args: unknown[]) => object }> = {
  list: { methods: SharedList.methods, make: (a) => new SharedList(a[0]) },
  dict: { methods: SharedDict.methods, make: (a) => new SharedDict(a[0]) },
  namespace: { methods: SharedNamespace.methods, make: (a) => new SharedNamespace(a[0]) },
  Queue: { methods: SharedQueue.methods, make: (a) => new SharedQueue(a[0]) },
  JoinableQueue: {
    methods: SharedJoinableQueue.methods,
    make: (a) => new SharedJoinableQueue(a[0]),
  },
  Value: { methods: SharedValue.methods, make: (a) => new SharedValue(a[0], a[1]) },
  Array: { methods: SharedArrayObject.methods, make: (a) => new SharedArrayObject(a[0], a[1]) },
  Lock: { methods: SharedLock.methods, make: () => new SharedLock(false) },
  RLock: { methods: SharedLock.methods, make: () => new SharedLock(true) },
  Semaphore: { methods: SharedSemaphore.methods, make: (a) => new SharedSemaphore(a[0]) },
  BoundedSemaphore: {
    methods: SharedSemaphore.methods,
    make: (a) => new SharedSemaphore(a[0], true),
  },
  Event: { methods: SharedEvent.methods, make: () => new SharedEvent() },
  Condition: { methods: SharedCondition.methods, make: (a) => new SharedCondition(lockOf(a[0])) },
  Barrier: { methods: SharedBarrier.methods, make: (a) => new SharedBarrier(a[0], a[1]) },
};

interface Entry {
  value: object;
  typeid: string;
  refs: number;
  methods: Set<string>;
  builtin: boolean;
}

interface Custom {
  ctor: new (...args: unknown[]) => object;
  methods: Set<string>;
}

const objects = new Map<number, Entry>();
const names = new Map<string, OwnRef>();
const customs = new Map<string, Custom>();
let nextObject = 1;
let serverId = "";

function incref(id: number): void {
  const entry = objects.get(id);
  if (entry !== undefined) entry.refs++;
}

function decref(id: number): void {
  const entry = objects.get(id);
  if (entry === undefined) return;
  if (--entry.refs <= 0) objects.delete(id);
}

/** A reference the server holds to one of its own objects (in a list, by name). */
class OwnRef {
  readonly objectId: number;
  readonly typeid: string;
  readonly methods: string[] | undefined;
  constructor(objectId: number, typeid: string, methods: string[] | undefined) {
    this.objectId = objectId;
    this.typeid = typeid;
    this.methods = methods;
  }
  describe(): ProxyDescriptor {
    incref(this.objectId);
    return {
      server: serverId,
      objectId: this.objectId,
      typeid: this.typeid,
      ...(this.methods !== undefined ? { methods: this.methods } : {}),
    };
  }
}
markHandleClass(OwnRef, proxyKind);

/** A proxy to another manager's object, held by this server. */
class ForeignRef {}
markHandleClass(ForeignRef, proxyKind);

// An OwnRef revived from a request adopts the reference its sender counted.
const ownRefs = new FinalizationRegistry<number>((id) => decref(id));

function refFor(id: number): OwnRef {
  const entry = objects.get(id)!;
  return new OwnRef(id, entry.typeid, entry.builtin ? undefined : [...entry.methods]);
}

function lockOf(value: unknown): SharedLock | undefined {
  if (value === undefined || value === null) return undefined;
  const entry = value instanceof OwnRef ? objects.get(value.objectId) : undefined;
  if (entry === undefined || !(entry.value instanceof SharedLock)) {
    throw new TypeError(
      "Cannot make a Condition: its lock must be a Lock or RLock of this manager",
    );
  }
  return entry.value;
}

function methodsOf(ctor: new (...args: unknown[]) => object): Set<string> {
  const found = new Set<string>();
  for (
    let proto = ctor.prototype;
    proto !== null && proto !== Object.prototype;
    proto = Object.getPrototypeOf(proto)
  ) {
    for (const name of Object.getOwnPropertyNames(proto)) {
      if (name === "constructor" || name.startsWith("_")) continue;
      const d = Object.getOwnPropertyDescriptor(proto, name);
      if (d !== undefined && typeof d.value === "function") found.add(name);
    }
  }
  return found;
}

function create(typeid: unknown, args: unknown): OwnRef {
  if (typeof typeid !== "string") {
    throw new TypeError("Cannot create an object: typeid must be a string");
  }
  const list = Array.isArray(args) ? args : [];
  const builtin = Object.hasOwn(BUILTIN, typeid) ? BUILTIN[typeid] : undefined;
  let entry: Entry;
  if (builtin !== undefined) {
    entry = { value: builtin.make(list), typeid, refs: 0, methods: builtin.methods, builtin: true };
  } else {
    const custom = customs.get(typeid);
    if (custom === undefined) {
      throw new TypeError(
        `Cannot create a "${typeid}": no such type; call Manager.register("${typeid}", { module, export }) before Manager.start()`,
      );
    }
    entry = {
      value: new custom.ctor(...list),
      typeid,
      refs: 0,
      methods: custom.methods,
      builtin: false,
    };
  }
  const id = nextObject++;
  objects.set(id, entry);
  return refFor(id);
}

/** One authenticated client connection. */
class Client {
  readonly owner = {};
  readonly inflight = new Map<number, AbortController>();
  readonly conn: Deno.Conn;
  readonly writer: Outbox;
  closed = false;
  readonly lane: Lane | undefined;
  constructor(conn: Deno.Conn, lane: Lane | undefined) {
    this.conn = conn;
    this.lane = lane;
    // A write that fails means the peer is gone: drop it.
    this.writer = new Outbox(lane ?? conn, () => this.close());
  }
  reply(id: number, ok: boolean, value: unknown): void {
    if (id === 0 || this.closed) return;
    let bytes: Uint8Array;
    try {
      // A view of the codec's buffer: send() copies it into the frame at once.
      bytes = encodeView([id, ok, value], undefined, "the result");
    } catch (error) {
      bytes = encode([id, false, error]);
    }
    this.writer.send(bytes);
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    for (const controller of this.inflight.values()) controller.abort();
    this.inflight.clear();
    for (const entry of objects.values()) (entry.value as Shared).dropOwner?.(this.owner);
    try {
      this.conn.close();
    } catch { /* closed */ }
    this.lane?.close();
  }
}

const clients = new Set<Client>();
let stopping: (() => void) | undefined;

function managerOp(client: Client, id: number, method: string, args: unknown[]): unknown {
  switch (method) {
    case "create":
      return create(args[0], args[1]);
    case "incref":
      if (typeof args[0] === "number") incref(args[0]);
      return;
    case "decref":
      if (typeof args[0] === "number") decref(args[0]);
      return;
    case "cancel":
      if (typeof args[0] === "number") client.inflight.get(args[0])?.abort();
      return;
    case "expose": {
      const [name, ref] = args;
      if (typeof name !== "string") {
        throw new TypeError("Cannot expose an object: name must be a string");
      }
      if (!(ref instanceof OwnRef)) {
        throw new TypeError("Cannot expose an object: pass a proxy made by this manager");
      }
      const old = names.get(name);
      ownRefs.unregister(ref);
      names.set(name, ref);
      if (old !== undefined) decref(old.objectId);
      return;
    }
    case "lookup": {
      const ref = typeof args[0] === "string" ? names.get(args[0]) : undefined;
      if (ref === undefined || !objects.has(ref.objectId)) {
        throw new ValueError(
          `Cannot look up ${JSON.stringify(args[0])}: no object is exposed under that name`,
        );
      }
      return ref;
    }
    case "ping":
      return "pong";
    case "stats":
      return { objects: objects.size, names: names.size, clients: clients.size };
    case "shutdown":
      queueMicrotask(() => stopping?.());
      return;
  }
  void id;
  throw new TypeError(`Cannot call ${method}() on the manager: it has no such operation`);
}

function objectCall(client: Client, id: number, target: number, method: string, args: unknown[]) {
  const entry = objects.get(target);
  if (entry === undefined) {
    throw new ValueError(
      `Cannot call ${method}() on shared object ${target}: it was released or the manager restarted`,
    );
  }
  if (!entry.methods.has(method)) {
    throw new TypeError(
      `Cannot call ${method}() on a shared ${entry.typeid}: it has no such method; it has ${
        [...entry.methods].join(", ")
      }`,
    );
  }
  const fn = (entry.value as Record<string, (...a: unknown[]) => unknown>)[method]!;
  if (!entry.builtin) return fn.apply(entry.value, args);
  let controller: AbortController | undefined;
  const ctx: CallContext = {
    owner: client.owner,
    get signal() {
      if (controller === undefined) {
        controller = new AbortController();
        if (id !== 0) client.inflight.set(id, controller);
      }
      return controller.signal;
    },
  };
  const result = fn.call(entry.value, ctx, ...args);
  if (controller !== undefined && !(result instanceof Promise)) client.inflight.delete(id);
  return result;
}

function handleFrame(client: Client, frame: Uint8Array): void {
  const message = decode(frame);
  if (
    !Array.isArray(message) || message.length !== 4 || typeof message[0] !== "number" ||
    typeof message[1] !== "number" || typeof message[2] !== "string" || !Array.isArray(message[3])
  ) {
    throw new TypeError("Cannot handle a request: it is malformed");
  }
  const [id, target, method, args] = message as [number, number, string, unknown[]];
  let result: unknown;
  try {
    result = target === 0
      ? managerOp(client, id, method, args)
      : objectCall(client, id, target, method, args);
  } catch (error) {
    client.reply(id, false, error);
    return;
  }
  if (result instanceof Promise) {
    result.then(
      (value) => client.reply(id, true, value),
      (error) => client.reply(id, false, error),
    ).finally(() => client.inflight.delete(id));
  } else {
    client.reply(id, true, result);
  }
}

async function handshake(conn: Deno.Conn, authkey: Uint8Array): Promise<boolean> {
  let timer: ReturnType<typeof setTimeout> | undefined;
  try {
    await Promise.race([
      (async () => {
        await deliverChallenge(conn, authkey);
        await answerChallenge(conn, authkey);
      })(),
      new Promise((_, reject) => {
        timer = setTimeout(() => reject(new Error("handshake timed out")), HANDSHAKE_TIMEOUT);
      }),
    ]);
    return true;
  } catch {
    return false;
  } finally {
    if (timer !== undefined) clearTimeout(timer);
  }
}

async function serveConnection(
  conn: Deno.Conn,
  authkey: Uint8Array,
  laneDir: string | undefined,
): Promise<void> {
  const pending = new Set<Deno.Conn>([conn]);
  unauthenticated.add(pending);
  let ok = await handshake(conn, authkey);
  let lane: Lane | undefined;
  if (ok && laneDir !== undefined) {
    try {
      lane = await offerLane(conn, laneDir);
    } catch {
      ok = false;
    }
  }
  unauthenticated.delete(pending);
  if (!ok || stopped) {
    lane?.close();
    try {
      conn.close();
    } catch { /* closed */ }
    return;
  }
  const client = new Client(conn, lane);
  clients.add(client);
  const reader = new FrameReader(lane ?? conn);
  try {
    if (lane !== undefined) await serveLane(client, lane, reader);
    else {
      for (;;) {
        const frame = await reader.next();
        if (frame === null) break;
        handleFrame(client, frame);
        while (reader.buffered) handleFrame(client, reader.nextBuffered()!);
        await backedUp(client);
      }
    }
  } catch {
    // A garbage frame or a broken connection: drop this client only.
  }
  clients.delete(client);
  client.close();
}

// A client that does not read its answers is not read from either.
async function backedUp(client: Client): Promise<void> {
  while (client.writer.pendingBytes > HIGH_WATER && !client.closed) {
    await client.writer.progress();
  }
}

/** Local clients, whose requests come through lanes: each one's drain. */
const laneClients = new Map<Client, () => boolean>();
const spinner = new Spinner();

// Handles every whole request a lane client has sent, now; false if none. A
// client that does not read its answers is not read from either.
function drainOf(client: Client, lane: Lane, reader: FrameReader): () => boolean {
  const onFrame = (frame: Uint8Array) => handleFrame(client, frame);
  const stop = () => client.closed || client.writer.pendingBytes > HIGH_WATER;
  return () => reader.drainNow(lane, onFrame, stop);
}

// Polls every lane client once; a client that sends garbage is dropped.
function pollClients(): boolean {
  let any = false;
  for (const [client, drain] of laneClients) {
    try {
      if (drain()) any = true;
    } catch {
      client.close();
    }
  }
  return any;
}

async function serveLane(client: Client, lane: Lane, reader: FrameReader): Promise<void> {
  const drain = drainOf(client, lane, reader);
  laneClients.set(client, drain);
  try {
    let yielded = performance.now();
    for (;;) {
      drain();
      await backedUp(client);
      if (client.closed) return;
      // A client in a loop sends its next request within microseconds: poll
      // for it (and for every other local client's) before sleeping. Timers
      // and other connections get a turn at least each millisecond.
      if (spinner.spin(pollClients)) {
        if (performance.now() - yielded < 1) await null;
        else {
          await nextTurn(client.conn).catch(() => {});
          yielded = performance.now();
        }
        continue;
      }
      if (!(await lane.waitBell())) {
        drain();
        await reader.next(); // everything whole was handled: a cut frame throws
        return;
      }
      yielded = performance.now();
    }
  } finally {
    laneClients.delete(client);
  }
}

const unauthenticated = new Set<Set<Deno.Conn>>();
let stopped = false;

async function acceptLoop(
  listener: Deno.Listener,
  authkey: Uint8Array,
  laneDir: string | undefined,
): Promise<void> {
  for (;;) {
    let conn: Deno.Conn;
    try {
      conn = await listener.accept();
    } catch (error) {
      if (stopped || error instanceof Deno.errors.BadResource) return;
      // Out of file descriptors in a flood: let some close, then go on.
      await new Promise((resolve) => setTimeout(resolve, 50));
      continue;
    }
    if ("setNoDelay" in conn && typeof conn.setNoDelay === "function") {
      try {
        (conn as Deno.TcpConn).setNoDelay(true);
      } catch { /* not TCP */ }
    }
    serveConnection(conn, authkey, laneDir);
  }
}

function listen(config: ServeConfig): Deno.Listener {
  const a = config.address;
  if (typeof a === "string") return Deno.listen({ transport: "unix", path: a });
  if (config.tls !== undefined) {
    return Deno.listenTls({ hostname: a.hostname, port: a.port, ...config.tls });
  }
  return Deno.listen({ hostname: a.hostname, port: a.port });
}

async function tellReady(path: string, message: unknown): Promise<void> {
  const conn = await Deno.connect({ transport: "unix", path });
  try {
    const writer = new FrameWriter(conn);
    await writer.write(encode(message));
  } finally {
    conn.close();
  }
}

/** The server's main loop: the target of the manager's Process. */
export async function serveManager(config: ServeConfig): Promise<void> {
  serverId = config.server;
  globalThis.addEventListener("unhandledrejection", (event) => event.preventDefault());
  hooks.serverRevive = (d) => {
    if (d.server === serverId) {
      const ref = new OwnRef(d.objectId, d.typeid, d.methods);
      ownRefs.register(ref, d.objectId, ref);
      return ref;
    }
    if (d.address === undefined || d.authkey === undefined) {
      throw new TypeError("Cannot keep a proxy of another manager: it does not say where that is");
    }
    const holder = new ForeignRef();
    attach(holder, new ProxyRef(d as ProxyDescriptor & Endpoint));
    return holder;
  };
  let listener: Deno.Listener;
  try {
    for (const spec of config.types) {
      const module = await import(spec.module);
      const ctor = module[spec.exportName];
      if (typeof ctor !== "function") {
        throw new TypeError(
          `Cannot register type "${spec.typeid}": ${spec.module} exports no class named "${spec.exportName}"`,
        );
      }
      customs.set(spec.typeid, { ctor, methods: methodsOf(ctor) });
    }
    listener = listen(config);
  } catch (error) {
    await tellReady(config.ready, { ok: false, error });
    return;
  }
  const addr = listener.addr;
  const address: Address = addr.transport === "unix"
    ? (addr as Deno.UnixAddr).path
    : { hostname: (addr as Deno.NetAddr).hostname, port: (addr as Deno.NetAddr).port };
  const done = new Promise<void>((resolve) => stopping = resolve);
  // Local clients get lanes, their files beside the socket.
  const laneDir = typeof address === "string"
    ? address.slice(0, address.lastIndexOf("/"))
    : undefined;
  const accepting = acceptLoop(listener, config.authkey, laneDir);
  await tellReady(config.ready, { ok: true, address });
  await done;
  stopped = true;
  listener.close();
  await accepting;
  // Let the shutdown answer reach its caller before the connections close.
  await Promise.all([...clients].map((client) => client.writer.drained()));
  for (const client of [...clients]) client.close();
  for (const pending of unauthenticated) {
    for (const conn of pending) {
      try {
        conn.close();
      } catch { /* closed */ }
    }
  }
  objects.clear();
  names.clear();
  if (typeof config.address === "string") {
    try {
      Deno.removeSync(config.address);
    } catch { /* gone */ }
  }
}
