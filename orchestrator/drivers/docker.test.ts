/** The Docker driver without an engine: what a user sees when the engine is unreachable. Engine tests: test/docker/. */
import { describe, expect, it } from "vitest";
import Docker from "dockerode";
import { containerName, dockerNetworkName, DockerDriver } from "./docker.ts";

const unreachable = new DockerDriver({ docker: new Docker({ socketPath: "/nonexistent/qmt-docker.sock" }) });

describe("DockerDriver with no engine", () => {
  it("probe() resolves { ok: false } with the reason instead of throwing", async () => {
    const result = await unreachable.probe();
    expect(result.ok).toBe(false);
    expect(result.ok ? "" : result.reason).toContain("ENOENT");
  });

  it("probe() honours an already-aborted signal", async () => {
    const result = await new DockerDriver().probe(AbortSignal.abort(new Error("stop")));
    expect(result).toEqual({ ok: false, reason: "stop" });
  });

  it("createNetwork rejects with DockerUnreachableError (code DOCKER_UNREACHABLE)", async () => {
    await expect(unreachable.createNetwork("run1", { name: "public", kind: "public", subnet: "192.0.2.0/24" })).rejects.toMatchObject({
      name: "DockerUnreachableError",
      code: "DOCKER_UNREACHABLE",
    });
  });

  it("removeRun rejects with DockerUnreachableError rather than reporting nothing removed", async () => {
    await expect(unreachable.removeRun(undefined)).rejects.toMatchObject({ code: "DOCKER_UNREACHABLE" });
  });
});

describe("object names", () => {
  it("prefix networks and containers with the run id", () => {
    expect(dockerNetworkName("qmt-abc", "mgmt")).toBe("qmt-abc-mgmt");
    expect(containerName("qmt-abc", "lb")).toBe("qmt-abc-lb");
  });
});
