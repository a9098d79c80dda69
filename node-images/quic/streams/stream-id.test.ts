import { describe, expect, it } from "vitest";
import {
  makeStreamId,
  streamIdInitiator,
  streamIdIsBidirectional,
  streamIdIsClientInitiated,
  streamIndex,
} from "./stream-id.ts";

describe("stream IDs (RFC 9000 §2.1)", () => {
  it("the two low bits give the stream type as in Table 1", () => {
    // 0x00 client bidi, 0x01 server bidi, 0x02 client uni, 0x03 server uni.
    expect([0, 1, 2, 3].map((id) => [streamIdInitiator(id), streamIdIsBidirectional(id)])).toEqual([
      ["client", true],
      ["server", true],
      ["client", false],
      ["server", false],
    ]);
    expect(streamIdIsClientInitiated(4)).toBe(true);
    expect(streamIdIsClientInitiated(7)).toBe(false);
  });

  it("makeStreamId and streamIndex are inverse, also beyond 32 bits", () => {
    for (const index of [0, 1, 2, 1000, 2 ** 31, 2 ** 40 + 3]) {
      for (const initiator of ["client", "server"] as const) {
        for (const bidi of [true, false]) {
          const id = makeStreamId(initiator, bidi, index);
          expect(streamIndex(id)).toBe(index);
          expect(streamIdInitiator(id)).toBe(initiator);
          expect(streamIdIsBidirectional(id)).toBe(bidi);
        }
      }
    }
    expect(makeStreamId("server", false, 2)).toBe(11);
    expect(makeStreamId("client", true, 3)).toBe(12);
  });

  it("rejects an index at or beyond 2^60 (§4.6)", () => {
    expect(() => makeStreamId("client", true, 2 ** 60)).toThrow(RangeError);
    expect(() => makeStreamId("client", true, -1)).toThrow(RangeError);
  });
});
