/**
 * UdpEndpoint.flush sends at most FLUSH_BATCH_DATAGRAMS datagrams, then yields to the event loop, so the sockets
 * are read between batches. Before, one flush drained every transmit at once: at 10,000 client connections a
 * timer due for thousands of them kept the loop busy for 1-3 s while the kernel dropped what overflowed the
 * sockets' receive buffers (bench/scale-10k.bench.ts). Real sockets on 127.0.0.1; the only stand-in is the
 * endpoint's transmit queue, filled with 600 ready datagrams, so the test needs no thousands of connections.
 */
import { createSocket } from "node:dgram";
import { afterEach, describe, expect, it } from "vitest";
import type { Transmit } from "../../node-images/quic/connection.ts";
import { FLUSH_BATCH_DATAGRAMS, UdpEndpoint } from "../../node-images/quic/udp-endpoint.ts";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const c of cleanups.splice(0)) await c();
});

describe("UdpEndpoint.flush batches", () => {
  it(`sends ${FLUSH_BATCH_DATAGRAMS} datagrams per event-loop turn and reads the sockets between batches`, async () => {
    const udp = await UdpEndpoint.bind({ bind: [{ address: "127.0.0.1", port: 0 }] });
    cleanups.push(() => udp.close());
    const sink = createSocket("udp4");
    await new Promise<void>((resolve) => sink.bind(0, "127.0.0.1", () => resolve()));
    sink.setRecvBufferSize(4 * 1024 * 1024); // all 600 fit, even if the sink is read only after the last batch
    cleanups.push(() => new Promise<void>((resolve) => sink.close(() => resolve())));
    let received = 0;
    sink.on("message", () => received++);

    const local = udp.sockets[0]!.address;
    const remote = { address: "127.0.0.1", port: sink.address().port };
    const total = 600;
    let handedOut = 0;
    /** datagramsIn when each batch started (the first pollTransmit of a batch). */
    const inAtBatchStart: number[] = [];
    udp.endpoint.pollTransmit = (): Transmit | undefined => {
      if (handedOut === total) return undefined;
      if (handedOut % FLUSH_BATCH_DATAGRAMS === 0) inAtBatchStart.push(udp.counters.datagramsIn);
      // While the first batch is being built, a datagram for the endpoint arrives (dgram sends it on nextTick,
      // after this synchronous flush; loopback queues it on the endpoint's socket at once).
      if (handedOut === 0) sink.send(Buffer.from("not quic"), local.port, local.address);
      handedOut++;
      return { datagram: Buffer.alloc(100, handedOut & 0xff), path: { local, remote } };
    };

    // From a timer callback, as UdpEndpoint's own timer flushes: the loop's poll phase (socket reads) comes
    // next, then the check phase where the next batch runs. (A flush called from an I/O callback, in the poll
    // phase, gets its second batch in the same turn's check phase: one more batch before the next reads.)
    const firstBatch = await new Promise<{ out: number; in: number }>((resolve) =>
      setTimeout(() => {
        udp.flush();
        resolve({ out: udp.counters.datagramsOut, in: udp.counters.datagramsIn });
      }, 0),
    );
    expect(firstBatch).toEqual({ out: FLUSH_BATCH_DATAGRAMS, in: 0 }); // synchronously: one batch only

    for (let i = 0; i < 20 && handedOut < total; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(handedOut).toBe(total);
    expect(udp.counters.datagramsOut).toBe(total);
    expect(inAtBatchStart).toHaveLength(Math.ceil(total / FLUSH_BATCH_DATAGRAMS));
    // The waiting datagram was read between the first and the second batch.
    expect(inAtBatchStart[0]).toBe(0);
    expect(inAtBatchStart[1]).toBe(1);

    for (let i = 0; i < 100 && received < total; i++) await new Promise((resolve) => setTimeout(resolve, 10));
    expect(received).toBe(total);
  });
});
