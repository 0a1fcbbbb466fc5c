import { CliError } from "./errors.ts";

/**
 * Loads a module that needs an optional peer dependency of this package (`@aws-sdk/client-s3` for s3:// sources,
 * `@auditsink/mcp` for mcp-proxy), so commands that do not need it neither pay its start-up time nor require it
 * installed. When the peer is missing the command fails with exit 2 and the line that installs it.
 */
export async function importWithPeer<T>(load: () => Promise<T>, peer: string, neededFor: string): Promise<T> {
  try {
    return await load();
  } catch (e) {
    const code = (e as NodeJS.ErrnoException).code;
    if ((code === "ERR_MODULE_NOT_FOUND" || code === "MODULE_NOT_FOUND") && String(e).includes(peer))
      throw new CliError(
        "dependency-missing",
        `${neededFor}, which is not installed: npm install ${peer} (next to @auditsink/cli; with a global install: npm install -g ${peer})`,
        { cause: e },
      );
    throw e;
  }
}
