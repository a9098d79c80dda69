/**
 * Which driver a command uses: `--driver`, else the one the current run was started with, else
 * docker when DockerDriver.probe() is ok, else local; the choice and why go to stderr.
 * Drivers are imported dynamically so `validate` works without them (and without Docker).
 */
import path from "node:path";
import type { Driver } from "../drivers/driver.ts";
import { DriverUnavailableError, UsageError } from "../errors.ts";
import type { CliContext } from "./command.ts";

export const DRIVER_NAMES = ["docker", "local"] as const;
export type DriverName = (typeof DRIVER_NAMES)[number];

export function parseDriverName(value: string | undefined): DriverName | undefined {
  if (value === undefined) return undefined;
  if ((DRIVER_NAMES as readonly string[]).includes(value)) return value as DriverName;
  throw new UsageError(`--driver: expected one of ${DRIVER_NAMES.join(", ")}, got ${JSON.stringify(value)}`);
}

type DriverModule = Record<string, unknown>;

async function importDriverModule(name: DriverName): Promise<DriverModule> {
  // A variable specifier: the module may not exist yet in this tree; a missing one is a clear error.
  const specifier = new URL(`../drivers/${name}.ts`, import.meta.url).href;
  try {
    return (await import(specifier)) as DriverModule;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && String((error as Error).message).includes(`drivers/${name}.ts`)) {
      throw new DriverUnavailableError(name, `orchestrator/drivers/${name}.ts is not in this tree yet`, { cause: error });
    }
    throw error;
  }
}

export async function createDriver(name: DriverName, stateDir: string): Promise<Driver> {
  const module = await importDriverModule(name);
  if (name === "docker") {
    const DockerDriver = module["DockerDriver"] as (new () => Driver) | undefined;
    if (typeof DockerDriver !== "function") throw new DriverUnavailableError(name, "orchestrator/drivers/docker.ts does not export DockerDriver");
    return new DockerDriver();
  }
  const LocalDriver = module["LocalDriver"] as (new (options: { stateRoot: string }) => Driver) | undefined;
  if (typeof LocalDriver !== "function") throw new DriverUnavailableError(name, "orchestrator/drivers/local.ts does not export LocalDriver");
  return new LocalDriver({ stateRoot: path.resolve(stateDir) });
}

/** `requested` (--driver) wins, then `recorded` (the current run's driver), then probing docker. */
export async function chooseDriver(requested: DriverName | undefined, context: CliContext, recorded?: string): Promise<Driver> {
  if (requested !== undefined) return createDriver(requested, context.stateDir);
  if (recorded === "docker" || recorded === "local") {
    context.err(`driver: ${recorded} (the current run was started with it)`);
    return createDriver(recorded, context.stateDir);
  }
  let reason: string;
  try {
    const docker = await createDriver("docker", context.stateDir);
    const probe = await docker.probe(context.signal);
    if (probe.ok) {
      context.err("driver: docker (engine reachable)");
      return docker;
    }
    await docker[Symbol.asyncDispose]();
    reason = probe.reason;
  } catch (error) {
    if (!(error instanceof DriverUnavailableError)) throw error;
    reason = error.message;
  }
  context.err(`driver: local (docker not usable: ${reason})`);
  return createDriver("local", context.stateDir);
}
