// Targets the benchmarks' children run.
export function noop(): void {}

export function double(x: number): number {
  return x * 2;
}

/** Some 2,000 floating-point steps per item: a map that computes. */
export function heavy(x: number): number {
  let sum = 0;
  for (let i = 0; i < 2000; i++) sum += Math.sqrt(x + i) * ((i & 7) + 1) / (i + 1);
  return sum;
}
