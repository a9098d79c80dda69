/**
 * The offline image builder (orchestrator/images/build.ts): pure parts always, real builds when a
 * docker engine and debootstrap (or BASE_IMAGE) are present.
 */
import { describe, expect, it } from "vitest";
import Docker from "dockerode";
import { buildBaseImage, buildRoleImage, debianMirrorFromSources, NODE_VERSION, productionPackagePaths } from "../../orchestrator/images/build.ts";
import { runCommand } from "../../orchestrator/images/command.ts";

const dockerReachable = await new Docker().ping().then(
  () => true,
  () => false,
);
const debootstrapPresent = (await runCommand(["debootstrap", "--version"]).catch(() => ({ exitCode: -1 }))).exitCode === 0;
const canBuild = dockerReachable && (debootstrapPresent || process.env.BASE_IMAGE !== undefined);
const baseImage = process.env.BASE_IMAGE || undefined;

describe("debianMirrorFromSources", () => {
  it("reads the URI of Debian's archive from deb822 sources, skipping security and third-party ones", () => {
    const deb822 = "Types: deb\nURIs: http://deb.debian.org/debian-security\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://mirror.example/debian\nSuites: bookworm\n";
    expect(debianMirrorFromSources(["deb https://packages.cloud.google.com/apt cloud-sdk main\n", deb822])).toBe("http://mirror.example/debian");
  });

  it("reads one-line sources, with options in brackets", () => {
    expect(debianMirrorFromSources(["# comment\ndeb [arch=amd64] http://ftp.de.debian.org/debian bookworm main\n"])).toBe("http://ftp.de.debian.org/debian");
  });

  it("returns undefined when no Debian archive is listed", () => {
    expect(debianMirrorFromSources(["deb http://archive.ubuntu.com/ubuntu jammy main\n"])).toBeUndefined();
  });
});

describe("productionPackagePaths", () => {
  it("keeps installed packages not marked dev or devOptional, sorted", () => {
    const lock = JSON.stringify({
      packages: {
        "": { name: "root" },
        "node_modules/zod": {},
        "node_modules/vitest": { dev: true },
        "node_modules/fsevents": { devOptional: true },
        "node_modules/yaml": {},
        "node_modules/a/node_modules/b": {},
      },
    });
    expect(productionPackagePaths(lock)).toEqual(["node_modules/a/node_modules/b", "node_modules/yaml", "node_modules/zod"]);
  });
});

describe.skipIf(!canBuild)("image builds (needs a docker engine, and debootstrap or BASE_IMAGE)", () => {
  it("the base image has Node and tc, and a second build with the same inputs is a cache hit", async () => {
    await buildBaseImage({ baseImage });
    const again = await buildBaseImage({ baseImage });
    expect(again.cached).toBe(true);
    expect(again.durationMs).toBeLessThan(2_000);
    const run = await runCommand(["docker", "run", "--rm", "--network", "none", again.tag, "sh", "-c", "node --version && tc -V"]);
    expect(run.exitCode, run.stderr).toBe(0);
    expect(run.stdout).toContain(`v${NODE_VERSION}`);
    expect(run.stdout).toContain("iproute2");
  }, 300_000);

  it("a role image runs node-images/<role>/main.ts by default (exit 64 when it does not exist) and has the production packages", async () => {
    const base = await buildBaseImage({ baseImage });
    // A role name no folder uses, so the default command must report the missing main.ts.
    const image = await buildRoleImage("no-such-role", { baseTag: base.tag });
    const byDefault = await runCommand(["docker", "run", "--rm", "--network", "none", image.tag]);
    expect(byDefault.exitCode).toBe(64);
    expect(byDefault.stderr).toContain("no node-images/no-such-role/main.ts");
    const deps = await runCommand(["docker", "run", "--rm", "--network", "none", image.tag, "node", "-e", 'Promise.all(["yaml","zod","prom-client"].map((m)=>import(m))).then(()=>console.log("ok"))']);
    expect(deps.stdout.trim(), deps.stderr).toBe("ok");
    const noDev = await runCommand(["docker", "run", "--rm", "--network", "none", image.tag, "sh", "-c", "test -e node_modules/vitest || test -e node_modules/typescript"]);
    expect(noDev.exitCode).toBe(1);
    await runCommand(["docker", "image", "rm", image.tag, "qmt/no-such-role:latest"]);
  }, 300_000);
});
