/**
 * The congestion controller interface (RFC 9002 §7) and its factory. One controller per path: a new path starts from
 * the initial window (RFC 9000 §9.4). Controllers count bytes; time comes in as `now`.
 */
import type { Instant } from "../../time.ts";
import type { RttEstimator } from "../rtt-estimator.ts";
import { Cubic, type CubicState } from "./cubic.ts";
import { NewReno, type NewRenoState } from "./new-reno.ts";

export type CongestionControlName = "newreno" | "cubic";

export interface AckedOrLostPacket {
  sizeBytes: number;
  timeSentMs: Instant;
}

export interface CongestionController {
  readonly name: CongestionControlName;
  congestionWindowBytes(): number;
  bytesInFlight(): number;
  /** Whether a packet of `bytes` fits in the window now (probes bypass this, RFC 9002 §7.5). */
  canSend(bytes: number): boolean;
  onPacketSent(bytes: number, now: Instant): void;
  /** `appLimited`: the sender did not fill the window, so it must not grow (RFC 9002 §7.8). */
  onPacketsAcked(packets: readonly AckedOrLostPacket[], now: Instant, rtt: RttEstimator, appLimited: boolean): void;
  onPacketsLost(packets: readonly AckedOrLostPacket[], now: Instant, persistentCongestion: boolean): void;
  /** Packets removed from flight without acknowledgement or loss, e.g. on key discard (RFC 9002 §6.4). */
  onPacketsDiscarded(bytes: number): void;
  reset(): void;
  toJSON(): object;
}

/** RFC 9002 §7.2: kInitialWindow = min(10 × max_datagram_size, max(14720, 2 × max_datagram_size)). */
export function initialWindowBytes(maxDatagramSizeBytes: number): number {
  return Math.min(10 * maxDatagramSizeBytes, Math.max(14720, 2 * maxDatagramSizeBytes));
}

/** RFC 9002 §7.2: kMinimumWindow = 2 × max_datagram_size. */
export function minimumWindowBytes(maxDatagramSizeBytes: number): number {
  return 2 * maxDatagramSizeBytes;
}

/** RFC 9002 §7.6.2 / §7.3.2 kLossReductionFactor for NewReno. */
export const LOSS_REDUCTION_FACTOR = 0.5;

export class UnknownCongestionControlError extends Error {
  override readonly name = "UnknownCongestionControlError";
  readonly code = "UNKNOWN_CONGESTION_CONTROL";
  constructor(given: string) {
    super(`unknown congestion control "${given}", expected one of: newreno, cubic`);
  }
}

export type CongestionControllerState = NewRenoState | CubicState;

/** Restores a controller from its `toJSON()` state (connection handoff). */
export function restoreCongestionController(state: CongestionControllerState): CongestionController {
  return state.name === "cubic" ? Cubic.fromJSON(state) : NewReno.fromJSON(state);
}

export function createCongestionController(
  name: CongestionControlName,
  maxDatagramSizeBytes: number,
  opts: { hystart?: boolean } = {},
): CongestionController {
  switch (name) {
    case "newreno":
      return new NewReno(maxDatagramSizeBytes);
    case "cubic":
      return new Cubic(maxDatagramSizeBytes, opts);
    default:
      throw new UnknownCongestionControlError(String(name satisfies never));
  }
}
