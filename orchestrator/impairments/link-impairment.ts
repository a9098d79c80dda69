/**
 * The fate of each datagram on one impaired link direction, with no sockets and no clock: a
 * datagram and the current time go in, zero, one or two deliveries (time + bytes) come out. The UDP
 * relay (udp-impairer.ts) and virtual-time tests drive it. The knobs and their meaning follow
 * Linux netem (tc-netem(8)) so the userspace path and the kernel path are the same experiment:
 *
 *   loss → duplicate → corrupt → rate (serialisation behind a queue of `limitPackets`) → delay ± jitter
 *
 * Jitter and order (STYLE.md "Impairments": jitter reorders unless asked not to):
 * - `reorderPercent` undefined: order is kept: a packet never leaves before the one admitted before
 *   it (netem with a `rate`, which is what netem.ts adds for the same spec).
 * - `reorderPercent` defined (also 0): jitter may reorder as netem's time-sorted queue does, and in
 *   addition `reorderPercent` % of the packets are sent at once, without the delay (netem `reorder`
 *   with gap 1), jumping ahead of the delayed ones.
 *
 * Correlation (loss, reorder) is a two-state Markov chain (the simple Gilbert model) whose
 * stationary probability is P and whose lag-1 correlation is ρ:
 *   P(event | previous event) = P + ρ(1 − P),  P(event | no previous event) = P(1 − ρ).
 * The long-run rate stays P and bursts last 1 / ((1 − P)(1 − ρ)) on average. netem's own
 * "correlated random" ((1 − ρ)·U + ρ·previous) does not keep the rate (it squeezes the values
 * towards 0.5, so 20 % loss with ρ = 75 % loses far less); netem.ts maps the same spec to
 * `loss gemodel`, the same chain in the kernel.
 */
import type { ImpairmentSpec } from "../topology/model.ts";
import { SeededRandom } from "../../node-images/common/seeded-random.ts";

export type DropReason = "loss" | "queueFull";

export interface ImpairmentCounters {
  received: number;
  forwarded: number;
  dropped: Record<DropReason, number>;
  duplicated: number;
  corrupted: number;
  reordered: number;
}

export interface Delivery {
  atMs: number;
  payload: Buffer;
}

/**
 * Rate limiting counts the IP packet, not only the UDP payload: payload + 20 (IPv4) + 8 (UDP), as
 * netem counts the packet length it sees (netem on an Ethernet device also counts the 14-byte L2
 * header: a small, known difference between the two paths).
 */
export const IPV4_UDP_HEADER_BYTES = 28;

/** Default queue limit in packets, as netem's. */
export const DEFAULT_LIMIT_PACKETS = 1000;

export function emptyCounters(): ImpairmentCounters {
  return { received: 0, forwarded: 0, dropped: { loss: 0, queueFull: 0 }, duplicated: 0, corrupted: 0, reordered: 0 };
}

/** A Bernoulli stream with stationary rate P and lag-1 correlation ρ (see the header). */
class CorrelatedEvents {
  #previous = false;
  readonly #rng: SeededRandom;
  constructor(rng: SeededRandom) {
    this.#rng = rng;
  }
  next(percent: number, correlationPercent: number | undefined): boolean {
    const p = Math.min(Math.max(percent / 100, 0), 1);
    const rho = Math.min(Math.max((correlationPercent ?? 0) / 100, 0), 1);
    const threshold = this.#previous ? p + rho * (1 - p) : p * (1 - rho);
    this.#previous = this.#rng.next() < threshold;
    return this.#previous;
  }
}

export class LinkImpairment {
  #spec: ImpairmentSpec;
  readonly #rng: SeededRandom;
  readonly #loss: CorrelatedEvents;
  readonly #reorder: CorrelatedEvents;
  readonly #duplicate: CorrelatedEvents;
  readonly #corrupt: CorrelatedEvents;
  /** When the serialiser is free again (rate limiting), ms. */
  #serialiserFreeAtMs = -Infinity;
  /** Serialisation end times of packets still in the rate queue, ascending. */
  #queueEndsMs: number[] = [];
  /** Latest delivery time handed out, for keeping order. */
  #lastDeliveryAtMs = -Infinity;
  readonly counters: ImpairmentCounters = emptyCounters();

  constructor(spec: ImpairmentSpec, seed = spec.seed ?? 1) {
    this.#spec = { ...spec };
    this.#rng = new SeededRandom(seed);
    this.#loss = new CorrelatedEvents(this.#rng);
    this.#reorder = new CorrelatedEvents(this.#rng);
    this.#duplicate = new CorrelatedEvents(this.#rng);
    this.#corrupt = new CorrelatedEvents(this.#rng);
  }

  get spec(): ImpairmentSpec {
    return { ...this.#spec };
  }

  /** Live reconfiguration: the PRNG stream continues, queued packets keep their times. */
  update(spec: ImpairmentSpec): void {
    this.#spec = { ...spec };
  }

  admit(payload: Buffer, nowMs: number): Delivery[] {
    const spec = this.#spec;
    this.counters.received++;
    if (spec.lossPercent !== undefined && spec.lossPercent > 0 && this.#loss.next(spec.lossPercent, spec.lossCorrelationPercent)) {
      this.counters.dropped.loss++;
      return [];
    }
    let copies = 1;
    if (spec.duplicatePercent !== undefined && spec.duplicatePercent > 0 && this.#duplicate.next(spec.duplicatePercent, undefined)) {
      copies = 2;
      this.counters.duplicated++;
    }
    let bytes = payload;
    if (spec.corruptPercent !== undefined && spec.corruptPercent > 0 && this.#corrupt.next(spec.corruptPercent, undefined) && payload.length > 0) {
      bytes = Buffer.from(payload);
      const bit = this.#rng.nextUint32() % (bytes.length * 8);
      bytes[bit >> 3]! ^= 1 << (bit & 7);
      this.counters.corrupted++;
    }

    let readyAtMs = nowMs;
    if (spec.rateBitsPerSecond !== undefined && spec.rateBitsPerSecond > 0) {
      while (this.#queueEndsMs.length > 0 && this.#queueEndsMs[0]! <= nowMs) this.#queueEndsMs.shift();
      if (this.#queueEndsMs.length >= (spec.limitPackets ?? DEFAULT_LIMIT_PACKETS)) {
        this.counters.dropped.queueFull++;
        return [];
      }
      const serialisationMs = ((bytes.length + IPV4_UDP_HEADER_BYTES) * 8 * 1000) / spec.rateBitsPerSecond;
      readyAtMs = Math.max(nowMs, this.#serialiserFreeAtMs) + serialisationMs;
      this.#serialiserFreeAtMs = readyAtMs;
      this.#queueEndsMs.push(readyAtMs);
    }

    let atMs = readyAtMs;
    const delayMs = spec.delayMs ?? 0;
    const reorderAllowed = spec.reorderPercent !== undefined;
    if (delayMs > 0 || (spec.jitterMs ?? 0) > 0) {
      if (reorderAllowed && spec.reorderPercent! > 0 && this.#reorder.next(spec.reorderPercent!, spec.reorderCorrelationPercent)) {
        this.counters.reordered++; // sent at once, ahead of the delayed packets
      } else {
        atMs = readyAtMs + Math.max(0, delayMs + this.#jitterSampleMs());
        if (!reorderAllowed) atMs = Math.max(atMs, this.#lastDeliveryAtMs);
      }
    }
    this.#lastDeliveryAtMs = Math.max(this.#lastDeliveryAtMs, atMs);
    this.counters.forwarded += copies;
    return copies === 1 ? [{ atMs, payload: bytes }] : [{ atMs, payload: bytes }, { atMs, payload: Buffer.from(bytes) }];
  }

  #jitterSampleMs(): number {
    const jitterMs = this.#spec.jitterMs ?? 0;
    if (jitterMs <= 0) return 0;
    switch (this.#spec.jitterDistribution ?? "uniform") {
      case "uniform":
        return jitterMs * (2 * this.#rng.next() - 1);
      case "normal":
        return jitterMs * this.#rng.nextNormal();
      case "pareto":
        return jitterMs * this.#standardPareto();
      case "paretonormal":
        // netem's paretonormal table: a quarter normal, three quarters pareto.
        return jitterMs * (0.25 * this.#rng.nextNormal() + 0.75 * this.#standardPareto());
    }
  }

  /** Pareto with shape 3, shifted and scaled to mean 0 and standard deviation 1. */
  #standardPareto(): number {
    const u = 1 - this.#rng.next(); // (0, 1]
    const x = Math.pow(u, -1 / 3); // mean 1.5, sd √(3/4)
    return (x - 1.5) / Math.sqrt(0.75);
  }
}
