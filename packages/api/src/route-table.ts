/**
 * The app's OpenAPI document as its route table: the routes it declares are the routes it serves, with the query
 * parameters it declares and no others. A request with an undeclared query parameter is a 400 naming it; a
 * declared path asked with an undeclared method is a 405 with `Allow` (RFC 9110 §15.5.6); anything else is 404.
 */
import type { OpenAPIHono } from "@hono/zod-openapi";
import { createMiddleware } from "hono/factory";
import { ApiError } from "./errors.ts";

interface DeclaredPath {
  template: string;
  pattern: RegExp;
  /** Upper-case methods; HEAD wherever GET is (Hono answers HEAD with the GET route, without the body). */
  methods: Set<string>;
  /** Query parameter names per method. */
  query: Map<string, Set<string>>;
}

type OpenApiPaths = Record<
  string,
  Record<string, { parameters?: { name: string; in: string; "x-multi-segment"?: boolean }[] }>
>;

const METHODS = ["get", "put", "post", "delete", "options", "head", "patch", "trace"];

/** The declared paths of the app, read from the document it serves. */
export function declaredPaths(paths: OpenApiPaths): DeclaredPath[] {
  return Object.entries(paths).map(([template, item]) => {
    const methods = new Set<string>();
    const query = new Map<string, Set<string>>();
    // A path parameter declared `x-multi-segment` (a tlog-tiles tile path, tlog.ts) spans "/"; others do not.
    const multi = new Set<string>();
    for (const [method, operation] of Object.entries(item)) {
      if (!METHODS.includes(method)) continue;
      for (const p of operation.parameters ?? [])
        if (p.in === "path" && p["x-multi-segment"] === true) multi.add(p.name);
      const names = new Set((operation.parameters ?? []).filter((p) => p.in === "query").map((p) => p.name));
      methods.add(method.toUpperCase());
      query.set(method.toUpperCase(), names);
      if (method === "get") {
        methods.add("HEAD");
        query.set("HEAD", names);
      }
    }
    const source = template
      .split(/(\{[^}]+\})/)
      .map((part, i) =>
        i % 2 === 1
          ? multi.has(part.slice(1, -1))
            ? ".+"
            : "[^/]+"
          : part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&"),
      )
      .join("");
    return { template, pattern: new RegExp(`^${source}$`), methods, query };
  });
}

/**
 * Installs the query check on every route and returns the answer for requests no route matched (404, or 405
 * when the path is declared for other methods). `paths` is called once, after every route is registered.
 */
export function enforceRouteTable(app: OpenAPIHono, paths: () => OpenApiPaths) {
  let table: DeclaredPath[] | undefined;
  const lookup = (path: string) => {
    table ??= declaredPaths(paths());
    return table.find((d) => d.pattern.test(path));
  };
  app.use(
    "*",
    createMiddleware(async (c, next) => {
      const declared = lookup(c.req.path)?.query.get(c.req.method);
      if (declared) {
        const given = [...new URL(c.req.url).searchParams.keys()];
        for (const [i, name] of given.entries()) {
          if (!declared.has(name)) {
            const takes =
              declared.size > 0 ? `this route takes ${[...declared].join(", ")}` : "this route takes none";
            throw new ApiError("invalid-query", `${name}: unknown query parameter; ${takes}`, name);
          }
          if (given.indexOf(name) !== i)
            throw new ApiError("invalid-query", `${name}: given more than once`, name);
        }
      }
      await next();
    }),
  );
  return (method: string, path: string): { status: 404 } | { status: 405; allow: string[] } => {
    const match = lookup(path);
    if (!match || match.methods.has(method)) return { status: 404 };
    return { status: 405, allow: [...match.methods].sort() };
  };
}
