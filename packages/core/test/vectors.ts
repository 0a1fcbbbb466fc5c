import { readdirSync, readFileSync, statSync } from "node:fs";
import { join, relative, resolve } from "node:path";

/** ../shared/vectors, beside the project; the vectors are read from there, never copied in. */
export const VECTORS = resolve(import.meta.dirname, "../../../../shared/vectors");

export function jsonFilesUnder(dir: string): { name: string; path: string }[] {
  const out: { name: string; path: string }[] = [];
  const walk = (d: string): void => {
    for (const entry of readdirSync(d).sort()) {
      const p = join(d, entry);
      if (statSync(p).isDirectory()) walk(p);
      else if (entry.endsWith(".json")) out.push({ name: relative(dir, p), path: p });
    }
  };
  walk(dir);
  return out;
}

export function readJson<T>(path: string): T {
  return JSON.parse(readFileSync(path, "utf8")) as T;
}
