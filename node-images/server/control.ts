/**
 * The backend's control API routes (node-images/common/control-api.ts does tokens, JSON, errors and
 * counting):
 *
 * | method and path | body | answer |
 * |---|---|---|
 * | `GET /status` | | addresses, preferred address, draining, connections, counters |
 * | `POST /drain` | | 200: no new connections; established ones carry on |
 * | `POST /activate` | | 200: accept new connections again |
 * | `PUT /preferred-address` | `{"address":"127.0.0.21:4433"}` or `{"address":null}` | 200: offered to new connections; 400 `INVALID_REQUEST` unless one of the direct addresses |
 * | `POST /fail` | | 202, then the process exits with code 70 (a crash on purpose, for drills) |
 */
import { z } from "zod";
import { ControlApiError, parseBody, type ControlRoute } from "../common/control-api.ts";
import { parseSocketAddress } from "../lb/config.ts";
import { formatSocketAddress, socketAddressEquals } from "../quic/path.ts";
import type { BackendServer } from "./backend-server.ts";

export const FAIL_EXIT_CODE = 70;

export function serverControlRoutes(ctx: { server: BackendServer; crash: () => void; log: (entry: Record<string, unknown>) => void }): ControlRoute[] {
  const { server } = ctx;
  return [
    { method: "GET", path: "/status", handle: () => ({ body: server.status() }) },
    {
      method: "POST",
      path: "/drain",
      handle: () => {
        server.drain();
        ctx.log({ event: "draining" });
        return { body: { draining: true } };
      },
    },
    {
      method: "POST",
      path: "/activate",
      handle: () => {
        server.activate();
        return { body: { draining: false } };
      },
    },
    {
      method: "PUT",
      path: "/preferred-address",
      handle: (req) => {
        const { address } = parseBody(z.strictObject({ address: z.string().nullable() }), req.body);
        if (address === null) {
          server.setPreferredAddress(undefined);
          return { body: { preferredAddress: null } };
        }
        const parsed = parseSocketAddress(address);
        const bound = server.udp.localAddresses;
        if (!parsed || !bound.some((b) => socketAddressEquals(b, parsed))) {
          throw new ControlApiError("INVALID_REQUEST", `address: expected one of ${bound.map(formatSocketAddress).join(", ")} or null, got ${JSON.stringify(address)}`);
        }
        server.setPreferredAddress(parsed);
        ctx.log({ event: "preferredAddressSet", address });
        return { body: { preferredAddress: address } };
      },
    },
    {
      method: "POST",
      path: "/fail",
      handle: () => {
        ctx.log({ event: "failingOnPurpose", exitCode: FAIL_EXIT_CODE });
        // Answer first, then crash: the caller learns the request was taken.
        setTimeout(ctx.crash, 20);
        return { status: 202, body: { failing: true, exitCode: FAIL_EXIT_CODE } };
      },
    },
  ];
}
