import { describe, expect, it } from "vitest";
import { LINKTYPE, PcapFormatError, readPcap, writeRawIpv4Pcap } from "./pcap.ts";

const A = { address: "10.77.0.2", port: 50000 };
const B = { address: "10.77.1.1", port: 4433 };

/** A pcap global header with the given byte order, timestamp precision and link type. */
function globalHeader(opts: { bigEndian?: boolean; nanoseconds?: boolean; linkType: number }): Buffer {
  const h = Buffer.alloc(24);
  const magic = opts.nanoseconds ? 0xa1b23c4d : 0xa1b2c3d4;
  if (opts.bigEndian) {
    h.writeUInt32BE(magic, 0);
    h.writeUInt16BE(2, 4);
    h.writeUInt16BE(4, 6);
    h.writeUInt32BE(262144, 16);
    h.writeUInt32BE(opts.linkType, 20);
  } else {
    h.writeUInt32LE(magic, 0);
    h.writeUInt16LE(2, 4);
    h.writeUInt16LE(4, 6);
    h.writeUInt32LE(262144, 16);
    h.writeUInt32LE(opts.linkType, 20);
  }
  return h;
}

function record(frame: Buffer, opts: { bigEndian?: boolean; seconds?: number; fraction?: number; originalBytes?: number } = {}): Buffer {
  const r = Buffer.alloc(16);
  const w = (v: number, o: number) => (opts.bigEndian ? r.writeUInt32BE(v, o) : r.writeUInt32LE(v, o));
  w(opts.seconds ?? 1_700_000_000, 0);
  w(opts.fraction ?? 250, 4);
  w(frame.length, 8);
  w(opts.originalBytes ?? frame.length, 12);
  return Buffer.concat([r, frame]);
}

/** The IPv4 packet of a one-datagram raw pcap (what writeRawIpv4Pcap frames). */
function ipv4Udp(payload: Buffer): Buffer {
  const file = writeRawIpv4Pcap([{ timeUs: 0, src: A, dst: B, payload }]);
  return file.subarray(24 + 16);
}

describe("pcap reader (classic libpcap, tcpdump -w)", () => {
  it("reads back what writeRawIpv4Pcap wrote: addresses, ports, payload, time, order", () => {
    const file = writeRawIpv4Pcap([
      { timeUs: 1_700_000_000_000_001, src: A, dst: B, payload: Buffer.from("first") },
      { timeUs: 1_700_000_000_500_000, src: B, dst: A, payload: Buffer.from("second!") },
    ]);
    const r = readPcap(file);
    expect(r.linkType).toBe(LINKTYPE.IPV4);
    expect(r.records).toBe(2);
    expect(r.udp.map((d) => [d.index, d.src, d.dst, d.payload.toString()])).toEqual([
      [0, A, B, "first"],
      [1, B, A, "second!"],
    ]);
    expect(r.udp[1]!.timeUs - r.udp[0]!.timeUs).toBe(499_999);
  });

  it("Ethernet frames: IPv4 UDP parsed, ARP and TCP skipped with a reason", () => {
    const mac = Buffer.alloc(12, 0xaa);
    const ether = (type: number, body: Buffer) => Buffer.concat([mac, Buffer.from([type >> 8, type & 0xff]), body]);
    const tcp = Buffer.from(ipv4Udp(Buffer.from("x")));
    tcp[9] = 6;
    const file = Buffer.concat([
      globalHeader({ linkType: LINKTYPE.ETHERNET }),
      record(ether(0x0806, Buffer.alloc(28))),
      record(ether(0x0800, ipv4Udp(Buffer.from("quic")))),
      record(ether(0x0800, tcp)),
    ]);
    const r = readPcap(file);
    expect(r.udp.map((d) => [d.index, d.payload.toString()])).toEqual([[1, "quic"]]);
    expect(r.skipped).toEqual({ not_ip: 1, not_udp: 1 });
  });

  it("Linux cooked v2 (tcpdump -i any), big-endian files and nanosecond timestamps", () => {
    const sll2 = Buffer.alloc(20);
    sll2.writeUInt16BE(0x0800, 0);
    const file = Buffer.concat([
      globalHeader({ bigEndian: true, nanoseconds: true, linkType: LINKTYPE.LINUX_SLL2 }),
      record(Buffer.concat([sll2, ipv4Udp(Buffer.from("cooked"))]), { bigEndian: true, seconds: 10, fraction: 1_500 }),
    ]);
    const r = readPcap(file);
    expect(r.udp).toHaveLength(1);
    expect(r.udp[0]!.payload.toString()).toBe("cooked");
    expect(r.udp[0]!.timeUs).toBeCloseTo(10_000_001.5, 6);
  });

  it("counts snapped, fragmented and cut-off records instead of throwing", () => {
    const fragment = Buffer.from(ipv4Udp(Buffer.from("frag")));
    fragment.writeUInt16BE(0x2000, 6); // more fragments
    const whole = record(ipv4Udp(Buffer.from("ok")));
    const file = Buffer.concat([
      globalHeader({ linkType: LINKTYPE.IPV4 }),
      record(ipv4Udp(Buffer.from("snap")), { originalBytes: 2000 }),
      record(fragment),
      whole,
      whole.subarray(0, whole.length - 3), // tcpdump killed mid-write
    ]);
    const r = readPcap(file);
    expect(r.udp.map((d) => d.payload.toString())).toEqual(["ok"]);
    expect(r.skipped).toEqual({ snapped: 1, ip_fragment: 1, truncated_record: 1 });
  });

  it("rejects a file that is not a classic pcap with a typed error", () => {
    expect(() => readPcap(Buffer.from("0a0d0d0a" + "00".repeat(40), "hex"))).toThrow(PcapFormatError);
    expect(() => readPcap(Buffer.alloc(10))).toThrow(/shorter than the 24-byte global header/);
  });
});
