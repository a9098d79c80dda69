import { describe, expect, it } from "vitest";
import { demuxDockerStream } from "./docker-stream.ts";

function frame(type: number, text: string): Buffer {
  const payload = Buffer.from(text);
  const header = Buffer.alloc(8);
  header[0] = type;
  header.writeUInt32BE(payload.length, 4);
  return Buffer.concat([header, payload]);
}

describe("demuxDockerStream (docker's 8-byte-header multiplexed stream)", () => {
  it("splits interleaved stdout (1) and stderr (2) frames, keeping each stream's order", () => {
    const raw = Buffer.concat([frame(1, "a"), frame(2, "x"), frame(1, "bc"), frame(2, "yz\n")]);
    expect(demuxDockerStream(raw)).toEqual({ stdout: "abc", stderr: "xyz\n" });
  });

  it("keeps multi-byte characters whole when they span frames", () => {
    const euro = Buffer.from("€");
    const h1 = Buffer.from([1, 0, 0, 0, 0, 0, 0, 1]);
    const h2 = Buffer.from([1, 0, 0, 0, 0, 0, 0, 2]);
    expect(demuxDockerStream(Buffer.concat([h1, euro.subarray(0, 1), h2, euro.subarray(1)])).stdout).toBe("€");
  });

  it("ignores a truncated trailing header", () => {
    expect(demuxDockerStream(Buffer.concat([frame(1, "ok"), Buffer.from([1, 0, 0])]))).toEqual({ stdout: "ok", stderr: "" });
  });
});
