/**
 * The module a worker thread runs: `name` beside the calling module (`workerModule(import.meta.url, "x")`).
 * Installed, modules are compiled JavaScript: the worker runs `x.js`. Run from source (tsx, tests), Node 20 does
 * not carry module loader hooks into workers, so the worker loads a small module that first registers tsx's
 * loader in that worker, then imports `x.ts`.
 */
export function workerModule(caller: string, name: string): URL {
  if (!caller.endsWith(".ts")) return new URL(`./${name}.js`, caller);
  const loader = JSON.stringify(import.meta.resolve("tsx/esm/api"));
  const entry = JSON.stringify(new URL(`./${name}.ts`, caller).href);
  const code = `const { register } = await import(${loader}); register();
export default (await import(${entry})).default;`;
  return new URL(`data:text/javascript,${encodeURIComponent(code)}`);
}
