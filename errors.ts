/**
 * The error classes of `@seed/multiprocessing`, as in Python's `multiprocessing`
 * and `queue` modules. Every class extends {@linkcode ProcessError}.
 *
 * @example Catch a library error by class
 * ```ts
 * import { Empty, ProcessError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new Empty("Cannot get from queue as it is empty");
 * assert.ok(error instanceof ProcessError);
 * assert.equal(error.name, "Empty");
 * ```
 *
 * @module
 */

/**
 * The base class of every error this package defines (Python's
 * `multiprocessing.ProcessError`).
 *
 * @example Check that an error came from this package
 * ```ts
 * import { ProcessError, ValueError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.ok(new ValueError("Process is closed") instanceof ProcessError);
 * ```
 */
export class ProcessError extends Error {
  /**
   * Makes an error with a message and, optionally, a cause.
   *
   * @param message What happened, to which object, and what to do.
   * @param options The standard error options (`cause`).
   */
  constructor(message?: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/**
 * A non-blocking or timed `get` found the queue empty.
 *
 * @example
 * ```ts
 * import { Empty } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new Empty().name, "Empty");
 * ```
 */
export class Empty extends ProcessError {}

/**
 * A non-blocking or timed `put` found the queue full.
 *
 * @example
 * ```ts
 * import { Full } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new Full().name, "Full");
 * ```
 */
export class Full extends ProcessError {}

/**
 * The queue was shut down (Python 3.13's `queue.ShutDown`).
 *
 * @example
 * ```ts
 * import { ShutDown } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new ShutDown().name, "ShutDown");
 * ```
 */
export class ShutDown extends ProcessError {}

/**
 * The other end of a connection was closed and nothing is left to read.
 *
 * @example
 * ```ts
 * import { EOFError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new EOFError().name, "EOFError");
 * ```
 */
export class EOFError extends ProcessError {}

/**
 * A received message did not fit the buffer given to `recvBytesInto`; the
 * whole message is in `data`.
 *
 * @example
 * ```ts
 * import { BufferTooShort } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * const error = new BufferTooShort("Message is 3 bytes", new Uint8Array([1, 2, 3]));
 * assert.deepEqual(error.data, new Uint8Array([1, 2, 3]));
 * ```
 */
export class BufferTooShort extends ProcessError {
  /** The whole message that did not fit. */
  readonly data: Uint8Array;

  /**
   * Makes the error with the message that did not fit.
   *
   * @param message What did not fit where.
   * @param data The whole message.
   * @param options The standard error options (`cause`).
   */
  constructor(message?: string, data: Uint8Array = new Uint8Array(), options?: ErrorOptions) {
    super(message, options);
    this.data = data;
  }
}

/**
 * The peer did not prove it knows the shared key.
 *
 * @example
 * ```ts
 * import { AuthenticationError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new AuthenticationError().name, "AuthenticationError");
 * ```
 */
export class AuthenticationError extends ProcessError {}

/**
 * A wait ran out of time (Python's `multiprocessing.TimeoutError`).
 *
 * @example
 * ```ts
 * import { TimeoutError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new TimeoutError().name, "TimeoutError");
 * ```
 */
export class TimeoutError extends ProcessError {}

/**
 * An object was used in a state that forbids it: a process started twice, a
 * closed queue put to. The message names the state.
 *
 * @example
 * ```ts
 * import { ValueError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new ValueError().name, "ValueError");
 * ```
 */
export class ValueError extends ProcessError {}

/**
 * A barrier was broken, aborted or reset while a party waited on it.
 *
 * @example
 * ```ts
 * import { BrokenBarrierError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new BrokenBarrierError().name, "BrokenBarrierError");
 * ```
 */
export class BrokenBarrierError extends ProcessError {}

/**
 * An error raised in another process or worker whose class could not be
 * rebuilt here; the remote stack is in `cause`.
 *
 * @example
 * ```ts
 * import { RemoteError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new RemoteError().name, "RemoteError");
 * ```
 */
export class RemoteError extends ProcessError {}

/**
 * A pool worker died while it ran a task.
 *
 * @example
 * ```ts
 * import { WorkerLostError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new WorkerLostError().name, "WorkerLostError");
 * ```
 */
export class WorkerLostError extends ProcessError {}

/**
 * A value could not be serialized to cross to another process or worker. The
 * message names where in the value the problem is; nothing was sent.
 *
 * @example
 * ```ts
 * import { DataCloneError } from "@seed/multiprocessing/errors";
 * import assert from "node:assert/strict";
 *
 * assert.equal(new DataCloneError().name, "DataCloneError");
 * ```
 */
export class DataCloneError extends ProcessError {}
