/**
 * Paths are first-class (RFC 9000 §9): a connection may hold several, each with its own
 * RTT estimate, congestion controller, pacer and anti-amplification budget. Migration
 * (path validation, preferred address) builds on this.
 */
import { RttEstimator } from "./recovery/rtt-estimator.ts";
import { createCongestionController, type CongestionController } from "./recovery/congestion/congestion-controller.ts";
import { Pacer } from "./recovery/pacer.ts";

/** A UDP 4-tuple seen from this endpoint. Addresses are textual (IPv4 dotted or IPv6). */
export interface SocketAddress {
  address: string;
  port: number;
}

export interface PathAddress {
  local: SocketAddress;
  remote: SocketAddress;
}

export function socketAddressEquals(a: SocketAddress, b: SocketAddress): boolean {
  return a.port === b.port && a.address === b.address;
}

export function pathAddressEquals(a: PathAddress, b: PathAddress): boolean {
  return socketAddressEquals(a.local, b.local) && socketAddressEquals(a.remote, b.remote);
}

export function formatSocketAddress(a: SocketAddress): string {
  return a.address.includes(":") ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
}

/** RFC 9000 §8.1: until the peer's address is validated, send at most 3× what was received. */
export const AMPLIFICATION_FACTOR = 3;

export class Path {
  readonly id: number;
  readonly address: PathAddress;
  /** Has the peer proven it can receive at this address (§8, §8.2)? */
  validated: boolean;
  /**
   * Does the anti-amplification limit apply until validation (§8, §9.3.1; PA-27)? True for a peer address
   * we have not seen proven; false for paths this endpoint opened itself (a client probing an address the
   * server gave it) and for a known-good peer address reached on another local address.
   */
  amplificationLimited: boolean;
  bytesReceived = 0;
  bytesSent = 0;
  /** 1-RTT packets with a non-probing frame (§9.1), each way: what PA-08, PA-17 and PA-19 are about. */
  nonProbingPacketsSent = 0;
  nonProbingPacketsReceived = 0;
  readonly rtt: RttEstimator;
  readonly congestion: CongestionController;
  readonly pacer: Pacer;

  constructor(
    id: number,
    address: PathAddress,
    opts: { validated: boolean; amplificationLimited?: boolean; congestionControl: "newreno" | "cubic"; maxDatagramSizeBytes: number; initialRttMs?: number },
  ) {
    this.id = id;
    this.address = address;
    this.validated = opts.validated;
    this.amplificationLimited = opts.amplificationLimited ?? true;
    this.rtt = new RttEstimator(opts.initialRttMs);
    this.congestion = createCongestionController(opts.congestionControl, opts.maxDatagramSizeBytes);
    this.pacer = new Pacer(opts.maxDatagramSizeBytes);
  }

  /** Bytes we may still send before validation (anti-amplification, §8.1); Infinity once validated. */
  amplificationBudget(): number {
    return this.validated || !this.amplificationLimited ? Infinity : Math.max(0, AMPLIFICATION_FACTOR * this.bytesReceived - this.bytesSent);
  }

  toJSON(): object {
    return {
      id: this.id,
      address: this.address,
      validated: this.validated,
      amplificationLimited: this.amplificationLimited,
      bytesReceived: this.bytesReceived,
      bytesSent: this.bytesSent,
      nonProbingPacketsSent: this.nonProbingPacketsSent,
      nonProbingPacketsReceived: this.nonProbingPacketsReceived,
      rtt: this.rtt.toJSON(),
      congestion: this.congestion.toJSON(),
    };
  }
}
