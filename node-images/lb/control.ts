/**
 * The LB's control API routes (served by node-images/common/control-api.ts with the run's token):
 *
 *   GET    /status                       addresses, QUIC-LB configs (no keys), backends, counters
 *   POST   /backends                     join   {"id","serverId":"01","address":"ip:port","healthUrl"?:"http://…/healthz"}
 *   DELETE /backends/:id                 leave
 *   POST   /backends/:id/drain           no new connections; CID-routed traffic continues
 *   POST   /backends/:id/activate        back into the hash
 */
import { z } from "zod";
import type { MetricsRegistry } from "../common/metrics.ts";
import { ControlApiError, parseBody, type ControlRoute } from "../common/control-api.ts";
import { formatSocketAddress } from "../quic/path.ts";
import type { QuicLbConfig } from "../quic/quic-lb.ts";
import { healthUrlSchema, parseSocketAddress } from "./config.ts";
import type { LbDataPlane } from "./data-plane.ts";
import type { HealthMonitor } from "./health-check.ts";
import { RouterError, type Backend, type QuicLbRouter } from "./router.ts";

const joinSchema = z.strictObject({
  id: z.string().min(1).max(64),
  serverId: z.string().regex(/^([0-9a-fA-F]{2})+$/, 'expected hex octets like "01"'),
  address: z.string().refine((s) => parseSocketAddress(s) !== undefined, 'expected "ip:port"'),
  healthUrl: healthUrlSchema.optional(),
});

export interface LbControlContext {
  router: QuicLbRouter;
  dataPlane: LbDataPlane;
  configs: readonly QuicLbConfig[];
  metrics: MetricsRegistry;
  startedAtMs: number;
  /** Health checks; without it, a healthUrl in POST /backends is refused. */
  health?: HealthMonitor;
}

/** What `qmt_lb_backends{state}` counts: the operator's drain wins over health. */
export type BackendGaugeState = "active" | "draining" | "unhealthy";
export const BACKEND_GAUGE_STATES: readonly BackendGaugeState[] = ["active", "draining", "unhealthy"];

export function backendGaugeState(b: Backend): BackendGaugeState {
  if (b.state === "draining") return "draining";
  return b.healthy ? "active" : "unhealthy";
}

/** `qmt_lb_backends{state}`, kept equal to the router's membership and health after every change. */
export function backendGauge(metrics: MetricsRegistry, router: QuicLbRouter): () => void {
  const gauge = metrics.gauge("lb_backends", "Backends joined to the LB, by state (active, draining, unhealthy).", ["state"]);
  const update = (): void => {
    const counts: Record<BackendGaugeState, number> = { active: 0, draining: 0, unhealthy: 0 };
    for (const b of router.backends()) counts[backendGaugeState(b)]++;
    for (const state of BACKEND_GAUGE_STATES) gauge.set({ state }, counts[state]);
  };
  update();
  return update;
}

export function lbControlRoutes(ctx: LbControlContext): ControlRoute[] {
  const updateGauge = backendGauge(ctx.metrics, ctx.router);
  ctx.health?.onTransition(updateGauge);
  const view = (b: Backend): object => ({
    id: b.id,
    serverId: b.serverId.toString("hex"),
    address: formatSocketAddress(b.address),
    state: b.state,
    healthy: b.healthy,
    health: ctx.health?.view(b.id),
  });
  const changed = (backend: Backend, status = 200): { status: number; body: unknown } => {
    updateGauge();
    return { status, body: view(backend) };
  };
  return [
    {
      method: "GET",
      path: "/status",
      handle: () => ({
        body: {
          role: "lb",
          uptimeSeconds: Math.round((Date.now() - ctx.startedAtMs) / 1000),
          vips: ctx.dataPlane.vipSockets.map((v) => formatSocketAddress(v.address)),
          tunnel: ctx.dataPlane.tunnelSocket ? formatSocketAddress(ctx.dataPlane.tunnelSocket.address) : undefined,
          quicLb: ctx.configs.map((c) => ({
            configId: c.configId,
            serverIdLength: c.serverIdLength,
            nonceLength: c.nonceLength,
            encrypted: c.key !== undefined,
            encodeLength: c.encodeLength ?? true,
          })),
          backends: ctx.router.backends().map(view),
          healthCheck: ctx.health?.settings,
          hashFailingOpen: ctx.router.hashFailingOpen,
          counters: ctx.dataPlane.counters,
        },
      }),
    },
    {
      method: "POST",
      path: "/backends",
      handle: ({ body }) => {
        const spec = parseBody(joinSchema, body);
        if (spec.healthUrl !== undefined && !ctx.health) throw new ControlApiError("INVALID_REQUEST", "healthUrl: this LB runs no health checks");
        const existed = ctx.router.backend(spec.id) !== undefined;
        const backend = routerCall(() =>
          ctx.router.join({ id: spec.id, serverId: Buffer.from(spec.serverId, "hex"), address: parseSocketAddress(spec.address)! }),
        );
        // The body is the whole truth: a re-join without healthUrl stops the checks.
        ctx.health?.watch(spec.id, spec.healthUrl);
        return changed(backend, existed ? 200 : 201);
      },
    },
    {
      method: "DELETE",
      path: "/backends/:id",
      handle: ({ params }) => {
        const backend = routerCall(() => ctx.router.leave(params.id!));
        ctx.health?.unwatch(backend.id);
        return changed(backend);
      },
    },
    { method: "POST", path: "/backends/:id/drain", handle: ({ params }) => changed(routerCall(() => ctx.router.setState(params.id!, "draining"))) },
    { method: "POST", path: "/backends/:id/activate", handle: ({ params }) => changed(routerCall(() => ctx.router.setState(params.id!, "active"))) },
  ];
}

/** Router errors are the caller's mistakes: map them to API errors with stable codes. */
function routerCall<T>(f: () => T): T {
  try {
    return f();
  } catch (err) {
    if (!(err instanceof RouterError)) throw err;
    const status = err.code === "BACKEND_NOT_FOUND" ? 404 : err.code === "SERVER_ID_INVALID" ? 400 : 409;
    throw new ControlApiError(err.code, err.message, status);
  }
}
