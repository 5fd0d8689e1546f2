// The handle registry: objects that cross to another process or worker as a
// working handle to the same thing (a queue, a connection end, shared memory,
// a lock, a manager proxy) instead of as a copy. Each kind of handle knows how
// to become a descriptor (plain cloneable data) and how to revive from one.
// The codec finds handles at any depth by the HANDLE symbol.

/** Where an encoded value is going. */
export type Destination = "process" | "worker";

/** Permissions a `"process"` child needs to use the handles it was given. */
export interface Grants {
  read: Set<string>;
  write: Set<string>;
  net: Set<string>;
}

/** What the codec tells a handle kind while it encodes. */
export interface EncodeContext {
  /** Where the value goes; undefined when it is not known yet (a queue item). */
  destination?: Destination | undefined;
  /** Transferables (MessagePorts) for a `"worker"` destination, by index. */
  transfer?: Transferable[] | undefined;
  /** SharedArrayBuffers for a `"worker"` destination, by index: sent beside the bytes. */
  shared?: SharedArrayBuffer[] | undefined;
  /** Permissions a `"process"` destination needs; handles add to it. */
  grants?: Grants | undefined;
  /** The modules of the handle kinds met, filled in by the codec. */
  modules?: Set<string> | undefined;
  /** Run once the whole value is encoded and handed over (a moved end detaches). */
  commit?: (() => void)[] | undefined;
  /**
   * Run when the destination is known to be gone (a child that exited): what
   * it held is released, as a dead process's file descriptors close.
   */
  lost?: (() => void)[] | undefined;
}

/** What the codec tells a handle kind while it decodes. */
export interface DecodeContext {
  /** The transferables that came with the message, by index. */
  transfer?: readonly unknown[] | undefined;
  /** The SharedArrayBuffers that came with the message, by index. */
  shared?: readonly SharedArrayBuffer[] | undefined;
}

/** One kind of handle. `D` must be encodable by the codec. */
export interface HandleKind<T extends object = object, D = unknown> {
  /** A unique, stable name: it travels in the encoded bytes. */
  readonly name: string;
  /**
   * The module that makes this kind revivable once imported (the public
   * module that registers it): a child imports it before its arguments are
   * decoded, and only the modules of the kinds it is given.
   */
  readonly module: string;
  /** The descriptor that lets the receiver reach the same object. */
  describe(handle: T, context: EncodeContext): D;
  /** A working handle made from a descriptor. */
  revive(descriptor: D, context: DecodeContext): T;
}

/** The key by which the codec recognises a handle: `value[HANDLE]` is its kind. */
export const HANDLE: unique symbol = Symbol("@seed/multiprocessing/handle");

const kinds = new Map<string, HandleKind>();

/** Registers a kind; its module calls this once when it loads. */
export function registerHandleKind<T extends object, D>(kind: HandleKind<T, D>): HandleKind<T, D> {
  const known = kinds.get(kind.name);
  if (known !== undefined && known !== kind) {
    throw new TypeError(`Cannot register handle kind "${kind.name}": the name is taken`);
  }
  kinds.set(kind.name, kind as unknown as HandleKind);
  return kind;
}

/** The kind registered under a name. */
export function handleKind(name: string): HandleKind {
  const kind = kinds.get(name);
  if (kind === undefined) {
    throw new TypeError(
      `Cannot revive a handle of kind "${name}": its module is not loaded here; import "@seed/multiprocessing" in this program`,
    );
  }
  return kind;
}

/** Empty grants, to fill while encoding for a `"process"` child. */
export function emptyGrants(): Grants {
  return { read: new Set(), write: new Set(), net: new Set() };
}

/**
 * Makes every instance of `cls` a handle of `kind`. The key goes on the
 * prototype, not in the class body, so public classes do not expose the
 * private HandleKind type.
 */
export function markHandleClass<T extends object>(
  cls: { prototype: T },
  kind: HandleKind<T, never> | HandleKind<T>,
): void {
  Object.defineProperty(cls.prototype, HANDLE, { value: kind, enumerable: false });
}
