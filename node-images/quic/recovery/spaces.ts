/**
 * Packet number spaces (RFC 9000 §12.3). Recovery state is kept per space (RFC 9002 §A.2).
 */
export type PacketNumberSpace = "initial" | "handshake" | "application";

/** In the order RFC 9002 §A.8 walks them when choosing the PTO space. */
export const PACKET_NUMBER_SPACES: readonly PacketNumberSpace[] = ["initial", "handshake", "application"];
