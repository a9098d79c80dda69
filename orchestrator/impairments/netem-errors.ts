/** Typed errors of the kernel (tc netem) impairment path. */
export class NetemError extends Error {
  override readonly name = "NetemError";
  readonly code: "NETEM_FOREIGN_QDISC" | "NETEM_COMMAND_FAILED" | "NETEM_READBACK_MISMATCH";
  readonly iface: string;
  constructor(code: NetemError["code"], iface: string, message: string, options?: { cause?: unknown }) {
    super(`${iface}: ${message}`, options);
    this.code = code;
    this.iface = iface;
  }
}
