/**
 * The user's words for quantities, as written in topology files and on the `impair` command line:
 * durations ("20ms", "1.5s", "250us"), rates ("100mbit", like tc(8)), percentages ("2%" or 2).
 * Each parser returns the model's unit or undefined when the text is not of that form;
 * the caller reports what was expected.
 */

const DURATION = /^(\d+(?:\.\d+)?)\s*(us|ms|s|m)$/;
const DURATION_MS_PER_UNIT: Record<string, number> = { us: 0.001, ms: 1, s: 1_000, m: 60_000 };

/** "20ms" → 20, "1.5s" → 1500, "250us" → 0.25. A bare number is refused: its unit would be a guess. */
export function parseDurationMs(text: string): number | undefined {
  const match = DURATION.exec(text.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (DURATION_MS_PER_UNIT[match[2] as string] as number);
}

// tc(8) rate units: bit, kbit, mbit, gbit (SI, bits per second); bps/kbps/mbps/gbps are bytes per second.
const RATE = /^(\d+(?:\.\d+)?)\s*(bit|kbit|mbit|gbit|bps|kbps|mbps|gbps)$/i;
const RATE_BITS_PER_UNIT: Record<string, number> = {
  bit: 1, kbit: 1e3, mbit: 1e6, gbit: 1e9,
  bps: 8, kbps: 8e3, mbps: 8e6, gbps: 8e9,
};

/** "100mbit" → 100_000_000 bits per second. */
export function parseRateBitsPerSecond(text: string): number | undefined {
  const match = RATE.exec(text.trim());
  if (match === null) return undefined;
  return Number(match[1]) * (RATE_BITS_PER_UNIT[(match[2] as string).toLowerCase()] as number);
}

const PERCENT = /^(\d+(?:\.\d+)?)\s*%?$/;

/** "2%" → 2, 2 → 2, "0.5" → 0.5. Range is the caller's check. */
export function parsePercent(value: string | number): number | undefined {
  if (typeof value === "number") return Number.isFinite(value) ? value : undefined;
  const match = PERCENT.exec(value.trim());
  return match === null ? undefined : Number(match[1]);
}

/** 1500 → "1.5s", 20 → "20ms": for plans and status lines. */
export function formatDurationMs(ms: number): string {
  if (ms >= 1_000 && ms % 100 === 0) return `${ms / 1_000}s`;
  if (ms < 1) return `${Math.round(ms * 1_000)}us`;
  return `${ms}ms`;
}

/** 100_000_000 → "100mbit". */
export function formatRateBitsPerSecond(bitsPerSecond: number): string {
  for (const [unit, factor] of [["gbit", 1e9], ["mbit", 1e6], ["kbit", 1e3]] as const) {
    if (bitsPerSecond >= factor && bitsPerSecond % factor === 0) return `${bitsPerSecond / factor}${unit}`;
  }
  return `${bitsPerSecond}bit`;
}
