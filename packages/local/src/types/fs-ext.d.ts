/** The part of fs-ext (flock(2) for Node) the data-directory lock uses. */
declare module "fs-ext" {
  export function flock(
    fd: number,
    flags: "sh" | "ex" | "shnb" | "exnb" | "un",
    callback: (err: NodeJS.ErrnoException | null) => void,
  ): void;
}
