// Targets the benchmarks' children run.
export function noop(): void {}
