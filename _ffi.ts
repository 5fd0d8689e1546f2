// libc through Deno FFI, for the "process" context: shared mappings (memfd for anonymous
// regions, shm_open for named ones), futex waits and wakes, thread ids and liveness, and the
// resource tracker that unlinks named segments when their creator exits, crashed or not.
// Linux only (x86_64 and aarch64 syscall numbers); macOS would use shm_open plus
// os_sync_wait_on_address / __ulock_wait, and has no memfd.

import { self } from "./_state.ts";

const SYMBOLS = {
  memfd_create: { parameters: ["buffer", "u32"], result: "i32" },
  shm_open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  shm_unlink: { parameters: ["buffer"], result: "i32" },
  open: { parameters: ["buffer", "i32", "u32"], result: "i32" },
  read: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  write: { parameters: ["i32", "buffer", "usize"], result: "isize" },
  close: { parameters: ["i32"], result: "i32" },
  ftruncate: { parameters: ["i32", "i64"], result: "i32" },
  lseek: { parameters: ["i32", "i64", "i32"], result: "i64" },
  mmap: { parameters: ["pointer", "usize", "i32", "i32", "i32", "i64"], result: "pointer" },
  munmap: { parameters: ["pointer", "usize"], result: "i32" },
  pipe2: { parameters: ["buffer", "i32"], result: "i32" },
  posix_spawn: {
    parameters: ["buffer", "buffer", "buffer", "pointer", "buffer", "buffer"],
    result: "i32",
  },
  posix_spawn_file_actions_init: { parameters: ["buffer"], result: "i32" },
  posix_spawn_file_actions_adddup2: { parameters: ["buffer", "i32", "i32"], result: "i32" },
  futex_wait: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "i32", "buffer", "pointer", "i32"],
    result: "i64",
    nonblocking: true,
  },
  futex_wake: {
    name: "syscall",
    parameters: ["i64", "pointer", "i32", "i32", "pointer", "pointer", "i32"],
    result: "i64",
  },
  gettid: { name: "syscall", parameters: ["i64"], result: "i64" },
} as const;

type Libc = Deno.DynamicLibrary<typeof SYMBOLS>["symbols"];

const SYS = Deno.build.arch === "aarch64"
  ? { futex: 98n, gettid: 178n }
  : { futex: 202n, gettid: 186n };
const O_RDWR = 2;
const O_CREAT = 0o100;
const O_EXCL = 0o200;
const O_CLOEXEC = 0o2000000;
const MFD_CLOEXEC = 1;
const PROT_RW = 3;
const MAP_SHARED = 1;
const FUTEX_WAIT = 0;
const FUTEX_WAKE = 1;

let lib: Libc | undefined;
let tid = 0;

/** The message for a "process"-context object made without FFI. */
export function ffiMissing(what: string): string {
  return `Cannot create ${what} in the "process" context: OS shared memory is reached through FFI; run again with the --allow-ffi flag, or use the "worker" context (getContext("worker") or { startMethod: "worker" }), or a Manager's Value`;
}

/** libc, opened once; throws `NotCapable` naming `--allow-ffi` when FFI is denied. */
export function libc(what = "shared memory"): Libc {
  if (lib !== undefined) return lib;
  return open(what);
}

/** libc for a new object: checks FFI is still granted (it may be revoked or denied here). */
export function libcFor(what: string): Libc {
  if (!ffiGranted()) throw new Deno.errors.NotCapable(ffiMissing(what));
  return lib ?? open(what);
}

function open(what: string): Libc {
  if (Deno.build.os !== "linux") {
    throw new Error(
      `Cannot create ${what} in the "process" context on ${Deno.build.os}: only Linux is supported yet; use the "worker" context`,
    );
  }
  try {
    lib = Deno.dlopen("libc.so.6", SYMBOLS).symbols;
  } catch (error) {
    if (error instanceof Deno.errors.NotCapable || error instanceof Deno.errors.PermissionDenied) {
      throw new Deno.errors.NotCapable(ffiMissing(what), { cause: error });
    }
    throw error;
  }
  return lib;
}

/** Whether FFI is usable without prompting. */
export function ffiGranted(): boolean {
  try {
    return Deno.permissions.querySync({ name: "ffi" }).state === "granted";
  } catch {
    return false;
  }
}

// Opened at load when allowed, so a test sanitizer does not see a library
// opened in a test. Not in a child (no tests run there): it would cost every
// child ~2 ms at start, and most never need it.
if (Deno.build.os === "linux" && self.startedAs === "main" && ffiGranted()) {
  try {
    open("shared memory");
  } catch { /* reported when an object needs it */ }
}

const encoder = new TextEncoder();

function cString(text: string): Uint8Array<ArrayBuffer> {
  return encoder.encode(`${text}\0`);
}

/** An OS shared mapping. `buffer` is an external ArrayBuffer over it. */
export interface Mapping {
  readonly pointer: Deno.PointerObject;
  readonly length: number;
  readonly fd: number;
  readonly buffer: ArrayBuffer;
}

function pageRound(size: number): number {
  return Math.max(4096, Math.ceil(size / 4096) * 4096);
}

const unmapper = new FinalizationRegistry<
  { pointer: Deno.PointerObject; length: number; fd: number }
>(
  ({ pointer, length, fd }) => {
    lib?.munmap(pointer, BigInt(length));
    if (fd >= 0) lib?.close(fd);
  },
);

function map(fd: number, length: number, keepFd: boolean): Mapping {
  const c = libc();
  const mapped = pageRound(length);
  const pointer = c.mmap(null, BigInt(mapped), PROT_RW, MAP_SHARED, fd, 0n);
  if (pointer === null || Deno.UnsafePointer.value(pointer) === 0xffffffffffffffffn) {
    c.close(fd);
    throw new Error(`Cannot map shared memory of ${length} bytes: mmap failed`);
  }
  if (!keepFd) c.close(fd);
  const buffer = Deno.UnsafePointerView.getArrayBuffer(pointer, Math.max(length, 1));
  // Unmapped only once nothing in JS can reach the memory.
  unmapper.register(buffer, { pointer, length: mapped, fd: keepFd ? fd : -1 }, buffer);
  return { pointer, length: mapped, fd: keepFd ? fd : -1, buffer };
}

/** Unmaps now: views over the mapping become empty (detached), so no use can fault. */
export function unmap(mapping: Mapping): void {
  if (mapping.buffer.detached) return;
  unmapper.unregister(mapping.buffer);
  mapping.buffer.transfer(0);
  lib?.munmap(mapping.pointer, BigInt(mapping.length));
  if (mapping.fd >= 0) lib?.close(mapping.fd);
}

/** A fresh anonymous region (memfd): never in /dev/shm, freed by the kernel when unused. */
export function createAnonymous(size: number, what: string): Mapping {
  const c = libcFor(what);
  const fd = c.memfd_create(cString("seed-multiprocessing"), MFD_CLOEXEC);
  if (fd < 0) throw new Error("Cannot create shared memory: memfd_create failed");
  if (c.ftruncate(fd, BigInt(pageRound(size))) !== 0) {
    c.close(fd);
    throw new Error(`Cannot create shared memory of ${size} bytes: ftruncate failed`);
  }
  return map(fd, size, true);
}

/** Opens the region another process (or this one) holds open as `fd`. */
export function openAnonymous(pid: number, fd: number, size: number): Mapping {
  const c = libcFor("shared memory");
  const own = c.open(cString(`/proc/${pid}/fd/${fd}`), O_RDWR | O_CLOEXEC, 0);
  if (own < 0) {
    throw new Error(
      `Cannot attach shared memory of process ${pid}: it has exited or closed it; keep the creator alive while others attach`,
    );
  }
  return map(own, size, true);
}

/** Opens (or creates) a named segment; returns the mapping and its size. */
export function openNamed(name: string, create: boolean, size: number): Mapping {
  const c = libcFor(`shared memory "${name}"`);
  const flags = O_RDWR | O_CLOEXEC | (create ? O_CREAT | O_EXCL : 0);
  const fd = c.shm_open(cString(`/${name}`), flags, 0o600);
  if (fd < 0) {
    if (create) {
      throw new Deno.errors.AlreadyExists(
        `Cannot create shared memory "${name}": it exists (or the name is not allowed); pick another name or attach with create: false`,
      );
    }
    throw new Deno.errors.NotFound(
      `Cannot attach shared memory "${name}": no such segment; create it first with create: true`,
    );
  }
  if (create) {
    if (c.ftruncate(fd, BigInt(size)) !== 0) {
      c.close(fd);
      c.shm_unlink(cString(`/${name}`));
      throw new Error(`Cannot create shared memory "${name}" of ${size} bytes: ftruncate failed`);
    }
  } else {
    size = Number(c.lseek(fd, 0n, 2));
  }
  return map(fd, size, false);
}

/** Removes a named segment; false when it was not there. */
export function unlinkNamed(name: string): boolean {
  return libc().shm_unlink(cString(`/${name}`)) === 0;
}

/** The OS thread id of this isolate (unique across processes while it lives). */
export function threadId(): number {
  if (tid === 0) tid = Number(libc().gettid(SYS.gettid));
  return tid;
}

const statBuffer = new Uint8Array(512);

/** Whether thread (or process) `id` lives: /proc/<id>/stat exists and is not a zombie. */
export function threadAlive(id: number): boolean {
  const c = libc();
  const fd = c.open(cString(`/proc/${id}/stat`), O_CLOEXEC, 0);
  if (fd < 0) return false;
  const n = Number(c.read(fd, statBuffer, BigInt(statBuffer.length)));
  c.close(fd);
  if (n <= 0) return false;
  const text = new TextDecoder().decode(statBuffer.subarray(0, n));
  const state = text.slice(text.lastIndexOf(")") + 2, text.lastIndexOf(")") + 3);
  return state !== "Z" && state !== "X";
}

let pendingWaits = 0;
/** Waits on other threads at once; beyond it waiters poll, so threads stay bounded. */
export const MAX_FUTEX_WAITS = 64;

/** Whether another futex wait may start now. */
export function futexSlotFree(): boolean {
  return pendingWaits < MAX_FUTEX_WAITS;
}

/**
 * Sleeps on the 32-bit word at `pointer + offset` while it holds `expected`, for at most
 * `ms` milliseconds (Infinity: no limit), on a thread of its own so the event loop stays free.
 * Spurious returns are possible: callers re-check.
 */
export async function futexWait(
  pointer: Deno.PointerObject,
  offset: number,
  expected: number,
  ms: number,
): Promise<void> {
  const c = libc();
  const address = Deno.UnsafePointer.offset(pointer, offset);
  let spec: Uint8Array<ArrayBuffer> | null = null;
  if (Number.isFinite(ms)) {
    const ns = BigInt(Math.max(0, Math.ceil(ms * 1e6)));
    spec = new Uint8Array(new BigInt64Array([ns / 1_000_000_000n, ns % 1_000_000_000n]).buffer);
  }
  pendingWaits++;
  try {
    await c.futex_wait(
      SYS.futex,
      address,
      FUTEX_WAIT,
      expected | 0,
      spec as Uint8Array<ArrayBuffer>,
      null,
      0,
    );
  } finally {
    pendingWaits--;
  }
}

/** Wakes up to `count` sleepers on the word at `pointer + offset`. */
export function futexWake(pointer: Deno.PointerObject, offset: number, count: number): number {
  const address = Deno.UnsafePointer.offset(pointer, offset);
  return Number(libc().futex_wake(SYS.futex, address, FUTEX_WAKE, count, null, null, 0));
}

// The resource tracker, as Python's: a small awk process whose stdin is a pipe only this
// process writes to. "+name" records a segment, "-name" forgets it; at end of input (this
// process exited, however it died) it unlinks what is left.
let trackerFd = -1;
const TRACKER =
  "trap '' INT TERM HUP; exec awk '/^[+]/{s[substr($0,2)]=1} /^-/{delete s[substr($0,2)]} END{for(n in s) system(\"rm -f /dev/shm/\" n)}'";

function pointerArray(items: (Uint8Array<ArrayBuffer> | null)[]): Uint8Array<ArrayBuffer> {
  const values = new BigUint64Array(items.length);
  items.forEach((item, i) => {
    values[i] = item === null ? 0n : Deno.UnsafePointer.value(Deno.UnsafePointer.of(item));
  });
  return new Uint8Array(values.buffer);
}

function startTracker(): number {
  const c = libc();
  const fds = new Int32Array(2);
  if (c.pipe2(new Uint8Array(fds.buffer), O_CLOEXEC) !== 0) return -1;
  const actions = new Uint8Array(256);
  c.posix_spawn_file_actions_init(actions);
  c.posix_spawn_file_actions_adddup2(actions, fds[0]!, 0);
  const strings = ["/bin/sh", "-c", TRACKER].map(cString);
  const env = [cString("PATH=/usr/bin:/bin")];
  const argv = pointerArray([...strings, null]);
  const envp = pointerArray([...env, null]);
  const pid = new Int32Array(1);
  const status = c.posix_spawn(new Uint8Array(pid.buffer), strings[0]!, actions, null, argv, envp);
  c.close(fds[0]!);
  if (status !== 0) {
    c.close(fds[1]!);
    return -1;
  }
  return fds[1]!;
}

function tell(line: string): void {
  if (trackerFd < 0) trackerFd = startTracker();
  if (trackerFd < 0) return;
  const bytes = encoder.encode(`${line}\n`);
  libc().write(trackerFd, bytes, BigInt(bytes.length));
}

/** Has the tracker unlink `name` when this process exits. */
export function track(name: string): void {
  tell(`+${name}`);
}

/** The segment was unlinked (or handed over): the tracker forgets it. */
export function untrack(name: string): void {
  if (trackerFd >= 0) tell(`-${name}`);
}
