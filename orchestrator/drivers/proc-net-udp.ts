/** UDP sockets bound on this host, from /proc/net/udp (proc(5)): local IPv4 address and port. */
import { readFileSync } from "node:fs";
import { endianness } from "node:os";

export function boundUdpSockets(): { address: string; port: number }[] {
  let text: string;
  try {
    text = readFileSync("/proc/net/udp", "utf8");
  } catch (error) {
    throw new Error("cannot read /proc/net/udp (the local driver needs Linux procfs)", { cause: error });
  }
  const sockets: { address: string; port: number }[] = [];
  for (const line of text.split("\n").slice(1)) {
    const local = line.trim().split(/\s+/)[1];
    if (local === undefined) continue;
    const [hexAddress, hexPort] = local.split(":");
    if (hexAddress === undefined || hexPort === undefined || hexAddress.length !== 8) continue;
    // The kernel prints the address as a host-order u32 in hex.
    const bytes = [0, 2, 4, 6].map((i) => parseInt(hexAddress.slice(i, i + 2), 16));
    if (endianness() === "LE") bytes.reverse();
    sockets.push({ address: bytes.join("."), port: parseInt(hexPort, 16) });
  }
  return sockets;
}
