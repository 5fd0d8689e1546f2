// Functions the pool tests run in pool workers.
import { currentProcess, type Value, ValueError } from "../../mod.ts";

let initialized: unknown = null;

export function double(x: number): number {
  return x * 2;
}

/** Twice `x`, but other kinds of result for items 20 to 25. */
export function mostlyInts(x: number): unknown {
  switch (x) {
    case 20:
      return -0;
    case 21:
      return 2 ** 31;
    case 22:
      return 0.5;
    case 23:
      return "s";
    case 24:
      return Promise.resolve(48);
    case 25:
      return NaN;
    default:
      return x * 2;
  }
}

/** mostlyInts() after some microseconds of computing: a pool worker runs such calls one at a time. */
export function slowMostlyInts(x: number): unknown {
  let sum = 0;
  for (let i = 0; i < 5_000; i++) sum += Math.sqrt(x + i);
  return sum < 0 ? sum : mostlyInts(x);
}

export function slowOfObject({ i }: { i: number }): unknown {
  return slowMostlyInts(i);
}

export function add(a: number, b: number): number {
  return a + b;
}

export async function slowDouble(x: number): Promise<number> {
  await new Promise((resolve) => setTimeout(resolve, 5));
  return x * 2;
}

/** Odd items' results come as promises, a rejected one for 13. */
export function oddLater(x: number): number | Promise<number> {
  if (x % 2 === 0) return x * 2;
  return x === 13 ? Promise.reject(new RangeError("bad odd 13")) : Promise.resolve(x * 2);
}

export function failOn(x: number): number {
  if (x === 3) throw new RangeError(`bad item ${x}`);
  return x;
}

export function failWithValueError(): never {
  throw new ValueError("the worker refused");
}

export function dieOn(x: number): number {
  if (x === 3) Deno.exit(3);
  return x;
}

export function killSelf(): never {
  Deno.kill(Deno.pid, "SIGKILL");
  throw new Error("unreachable");
}

export function sleepMs(ms: number): Promise<number> {
  return new Promise((resolve) => setTimeout(() => resolve(ms), ms));
}

export function workerName(): string {
  return currentProcess().name;
}

export function init(value: unknown): void {
  initialized = value;
}

export function initValue(): unknown {
  return initialized;
}

/** Adds one to the Value the initializer (init) was given; returns `x`. */
export function countCall(x: number): number {
  (initialized as Value<"i">).value++;
  return x;
}

export function initFails(): never {
  throw new Error("initializer failed on purpose");
}

export function returnsFunction(): () => void {
  return () => {};
}

export function pid(): number {
  return Deno.pid;
}

/** Keeps the thread busy for `ms` milliseconds, then returns `ms`. */
export function busyFor(ms: number): number {
  const end = performance.now() + ms;
  while (performance.now() < end) { /* busy */ }
  return ms;
}

/** Keeps the thread busy until `flag` is non-zero or `ms` pass; returns the flag. */
export function busyUntilSet(flag: Value<"i">, ms: number): number {
  const end = performance.now() + ms;
  while (flag.value === 0 && performance.now() < end) { /* busy */ }
  return flag.value;
}
