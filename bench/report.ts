/** Shared by the benchmarks: print progress on stderr and the one JSON result line on stdout. */
export function progress(message: string): void {
  process.stderr.write(`[bench] ${message}\n`);
}

export function emitResult(bench: string, metrics: Record<string, number | string | boolean>, targets: Record<string, string>, notes?: Record<string, unknown>): void {
  console.log(JSON.stringify({ bench, metrics, targets, ...(notes ? { notes } : {}) }));
}
