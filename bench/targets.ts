// Targets the benchmarks' children run.
export function noop(): void {}

export function double(x: number): number {
  return x * 2;
}
