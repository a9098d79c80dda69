import { FeatureUnavailableError } from "../errors.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";

type BuildImages = (opts: { signal?: AbortSignal; progress?: (line: string) => void }) => Promise<unknown>;

/** `buildImages` from orchestrator/images/build.ts, or a FeatureUnavailableError saying why not. */
export async function loadBuildImages(): Promise<BuildImages> {
  const specifier = new URL("../images/build.ts", import.meta.url).href;
  let module: Record<string, unknown>;
  try {
    module = (await import(specifier)) as Record<string, unknown>;
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code === "ERR_MODULE_NOT_FOUND" && String((error as Error).message).includes("images/build.ts")) {
      throw new FeatureUnavailableError("images: not available: orchestrator/images/build.ts is not in this tree yet", { cause: error });
    }
    throw error;
  }
  const buildImages = module["buildImages"];
  if (typeof buildImages !== "function") throw new FeatureUnavailableError("images: not available: orchestrator/images/build.ts does not export buildImages yet");
  return buildImages as BuildImages;
}

export const imagesCommand: Command = {
  name: "images",
  summary: "build the base and role images for the docker driver",
  help: `usage: testbed images [--json]

Builds (or finds, when already built) qmt/base and the role images.

example:
  npm run testbed -- images`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("images", args, { json: { type: "boolean" } });
    expectPositionals("images", positionals, 0, 0, "");
    const buildImages = await loadBuildImages();
    const result = await buildImages({ signal: context.signal, progress: (line) => context.err(`  ${line}`) });
    context.out(values.json === true ? JSON.stringify(result, null, 2) : "images ready");
    return 0;
  },
};
