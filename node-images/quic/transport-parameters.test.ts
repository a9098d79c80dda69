import { describe, expect, it } from "vitest";
import { QuicTransportError } from "./errors.ts";
import { decodePreferredAddress, encodePreferredAddress, type PreferredAddress } from "./preferred-address.ts";
import {
  decodeTransportParameters, defaultTransportParameters, encodeTransportParameters, type TransportParameters,
} from "./transport-parameters.ts";
import { ByteWriter } from "./varint.ts";

const TRANSPORT_PARAMETER_ERROR = 0x08;

function errorCode(fn: () => unknown): number | undefined {
  try {
    fn();
  } catch (err) {
    if (err instanceof QuicTransportError) return err.code;
    throw err;
  }
  return undefined;
}

/** Raw parameters: [id, value bytes]. */
function raw(params: Array<[number, Uint8Array]>): Buffer {
  const w = new ByteWriter(64);
  for (const [id, value] of params) {
    w.varint(id);
    w.varint(value.length);
    w.bytes(value);
  }
  return Buffer.from(w.finish());
}

function varintBytes(v: number): Buffer {
  const w = new ByteWriter(8);
  w.varint(v);
  return Buffer.from(w.finish());
}

const preferred: PreferredAddress = {
  ipv4: { address: "192.0.2.7", port: 4434 },
  ipv6: { address: "2001:db8::7", port: 4435 },
  connectionId: Buffer.from("0102030405060708", "hex"),
  statelessResetToken: Buffer.alloc(16, 0xab),
};

function serverParameters(): TransportParameters {
  return {
    ...defaultTransportParameters(),
    originalDestinationConnectionId: Buffer.from("8394c8f03e515708", "hex"),
    maxIdleTimeoutMs: 30_000,
    statelessResetToken: Buffer.alloc(16, 1),
    maxUdpPayloadSize: 1472,
    initialMaxData: 1 << 20,
    initialMaxStreamDataBidiLocal: 1000,
    initialMaxStreamDataBidiRemote: 2000,
    initialMaxStreamDataUni: 3000,
    initialMaxStreamsBidi: 100,
    initialMaxStreamsUni: 2 ** 60,
    ackDelayExponent: 10,
    maxAckDelayMs: 2 ** 14 - 1,
    disableActiveMigration: true,
    preferredAddress: preferred,
    activeConnectionIdLimit: 8,
    initialSourceConnectionId: Buffer.from("f067a5502a4262b5", "hex"),
    retrySourceConnectionId: Buffer.from("aabb", "hex"),
    maxDatagramFrameSize: 65535,
    unknown: [{ id: 0x4000, value: Buffer.from("hello") }],
  };
}

describe("transport parameters (RFC 9000 §18)", () => {
  it("round-trips every parameter sent by a server", () => {
    const tp = serverParameters();
    expect(decodeTransportParameters(encodeTransportParameters(tp, "server"), "server")).toEqual(tp);
  });

  it("decodes an empty extension to the §18.2 defaults and omits defaults when encoding", () => {
    expect(decodeTransportParameters(Buffer.alloc(0), "client")).toEqual(defaultTransportParameters());
    expect(encodeTransportParameters(defaultTransportParameters(), "client").length).toBe(0);
    const d = defaultTransportParameters();
    expect([d.maxUdpPayloadSize, d.ackDelayExponent, d.maxAckDelayMs, d.activeConnectionIdLimit]).toEqual([65527, 3, 25, 2]);
  });

  it("does not encode server-only parameters for a client", () => {
    const decoded = decodeTransportParameters(encodeTransportParameters(serverParameters(), "client"), "client");
    expect(decoded.preferredAddress).toBeUndefined();
    expect(decoded.originalDestinationConnectionId).toBeUndefined();
    expect(decoded.initialSourceConnectionId).toEqual(serverParameters().initialSourceConnectionId);
  });

  it("drops reserved (GREASE) parameters and keeps unknown ones", () => {
    const tp = decodeTransportParameters(raw([[27 + 31 * 5, Buffer.of(1, 2)], [0x7777, Buffer.of(9)]]), "client");
    expect(tp.unknown).toEqual([{ id: 0x7777, value: Buffer.of(9) }]);
  });

  const invalid: Array<[string, Buffer, "client" | "server"]> = [
    ["a duplicate parameter", raw([[0x04, varintBytes(1)], [0x04, varintBytes(2)]]), "server"],
    ["a client sending original_destination_connection_id", raw([[0x00, Buffer.of(1)]]), "client"],
    ["a client sending stateless_reset_token", raw([[0x02, Buffer.alloc(16)]]), "client"],
    ["a client sending retry_source_connection_id", raw([[0x10, Buffer.of(1)]]), "client"],
    ["max_udp_payload_size below 1200", raw([[0x03, varintBytes(1199)]]), "server"],
    ["ack_delay_exponent above 20", raw([[0x0a, varintBytes(21)]]), "server"],
    ["max_ack_delay of 2^14", raw([[0x0b, varintBytes(2 ** 14)]]), "server"],
    ["active_connection_id_limit below 2", raw([[0x0e, varintBytes(1)]]), "server"],
    ["initial_max_streams_bidi above 2^60", raw([[0x08, Buffer.from("d000000000000100", "hex")]]), "server"],
    ["initial_max_streams_uni above 2^60", raw([[0x09, Buffer.from("d000000000000100", "hex")]]), "server"],
    ["an integer value with trailing bytes", raw([[0x04, Buffer.of(1, 0)]]), "server"],
    ["a stateless_reset_token of 15 bytes", raw([[0x02, Buffer.alloc(15)]]), "server"],
    ["a non-empty disable_active_migration", raw([[0x0c, Buffer.of(0)]]), "server"],
    ["a 21-byte connection ID", raw([[0x0f, Buffer.alloc(21)]]), "server"],
    ["a length running past the end", Buffer.of(0x04, 0x05, 0x01), "server"],
  ];
  for (const [what, buf, role] of invalid) {
    it(`rejects ${what} with TRANSPORT_PARAMETER_ERROR`, () => {
      expect(errorCode(() => decodeTransportParameters(buf, role))).toBe(TRANSPORT_PARAMETER_ERROR);
    });
  }
});

describe("preferred_address (RFC 9000 §18.2)", () => {
  it("PA-01 rejects preferred_address sent by a client with TRANSPORT_PARAMETER_ERROR", () => {
    const buf = raw([[0x0d, encodePreferredAddress(preferred)]]);
    expect(errorCode(() => decodeTransportParameters(buf, "client"))).toBe(TRANSPORT_PARAMETER_ERROR);
    expect(decodeTransportParameters(buf, "server").preferredAddress).toEqual(preferred);
  });

  it("PA-02 encodes the layout: IPv4 + port, IPv6 + port, CID length, CID, reset token", () => {
    const encoded = encodePreferredAddress(preferred);
    expect(encoded.toString("hex")).toBe(
      "c0000207" + "1152" + "20010db8000000000000000000000007" + "1153" + "08" + "0102030405060708" + "ab".repeat(16),
    );
    expect(decodePreferredAddress(encoded)).toEqual(preferred);
  });

  it("PA-02 treats an all-zero family as not offered", () => {
    const v6only = { ...preferred, ipv4: undefined };
    const encoded = encodePreferredAddress(v6only);
    expect(encoded.subarray(0, 6).toString("hex")).toBe("000000000000");
    const decoded = decodePreferredAddress(encoded);
    expect(decoded?.ipv4).toBeUndefined();
    expect(decoded?.ipv6).toEqual({ address: "2001:db8::7", port: 4435 });
  });

  it("PA-02 treats both families zero as no preferred address", () => {
    const encoded = encodePreferredAddress({ connectionId: preferred.connectionId, statelessResetToken: preferred.statelessResetToken });
    expect(decodePreferredAddress(encoded)).toBeUndefined();
    expect(decodeTransportParameters(raw([[0x0d, encoded]]), "server").preferredAddress).toBeUndefined();
  });

  it("PA-03 rejects a preferred address with a zero-length connection ID", () => {
    const encoded = encodePreferredAddress(preferred);
    const zeroCid = Buffer.concat([encoded.subarray(0, 24), Buffer.of(0), encoded.subarray(33)]);
    expect(zeroCid.length).toBe(41);
    expect(errorCode(() => decodePreferredAddress(zeroCid))).toBe(TRANSPORT_PARAMETER_ERROR);
    expect(errorCode(() => decodeTransportParameters(raw([[0x0d, zeroCid]]), "server"))).toBe(TRANSPORT_PARAMETER_ERROR);
  });

  it("PA-03 rejects preferred_address from a server using zero-length connection IDs", () => {
    const buf = raw([[0x0f, Buffer.alloc(0)], [0x0d, encodePreferredAddress(preferred)]]);
    expect(errorCode(() => decodeTransportParameters(buf, "server"))).toBe(TRANSPORT_PARAMETER_ERROR);
  });

  it("rejects a truncated preferred address or trailing bytes with TRANSPORT_PARAMETER_ERROR", () => {
    const encoded = encodePreferredAddress(preferred);
    expect(errorCode(() => decodePreferredAddress(encoded.subarray(0, encoded.length - 1)))).toBe(TRANSPORT_PARAMETER_ERROR);
    expect(errorCode(() => decodePreferredAddress(Buffer.concat([encoded, Buffer.of(0)])))).toBe(TRANSPORT_PARAMETER_ERROR);
  });

  it("formats IPv6 addresses in RFC 5952 form", () => {
    for (const address of ["::1", "fe80::1:2", "2001:db8:0:1:1:1:1:1", "1::", "2001:db8::1:0:0:1"]) {
      const decoded = decodePreferredAddress(encodePreferredAddress({ ...preferred, ipv6: { address, port: 1 } }));
      expect(decoded?.ipv6?.address).toBe(address);
    }
  });
});
