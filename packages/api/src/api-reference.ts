/**
 * The rendered API reference at `/docs`: Swagger UI (swagger-ui-dist) reading the app's own /openapi.json.
 * Every file comes from the sink itself — no CDN — so the page works offline and under a strict
 * Content-Security-Policy (no inline script). The runtime supplies the Swagger UI files (AppDeps.apiReference);
 * the app only knows Request → Response.
 */
import { createRoute, type OpenAPIHono, z } from "@hono/zod-openapi";

/** The Swagger UI files the page loads, from the swagger-ui-dist package. */
export const API_REFERENCE_ASSETS = ["swagger-ui.css", "swagger-ui-bundle.js"] as const;
export type ApiReferenceAsset = (typeof API_REFERENCE_ASSETS)[number];

export interface ApiReferenceAssets {
  /** The bytes of one swagger-ui-dist file. */
  read(name: ApiReferenceAsset): Promise<Uint8Array>;
}

const FILES = [...API_REFERENCE_ASSETS, "init.js"] as const;
const TYPES: Record<(typeof FILES)[number], string> = {
  "swagger-ui.css": "text/css; charset=utf-8",
  "swagger-ui-bundle.js": "text/javascript; charset=utf-8",
  "init.js": "text/javascript; charset=utf-8",
};

const PAGE = `<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>auditsink API reference</title>
<link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="/docs/swagger-ui-bundle.js"></script>
<script src="/docs/init.js"></script>
</body>
</html>
`;

const INIT = `window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", deepLinking: true });\n`;

const CSP =
  "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'";

/** Registers `GET /docs` and `GET /docs/{file}` (declared in the OpenAPI document like every route). */
export function serveApiReference(
  app: OpenAPIHono,
  assets: ApiReferenceAssets,
  problems: (...statuses: number[]) => Record<number, unknown>,
): void {
  const cache = new Map<string, Uint8Array>();
  app.openapi(
    createRoute({
      method: "get",
      path: "/docs",
      summary: "The rendered API reference (Swagger UI over /openapi.json), served offline",
      responses: {
        200: { description: "HTML page", content: { "text/html": { schema: z.string() } } },
        ...problems(),
      },
    }),
    (c) => c.body(PAGE, 200, { "content-type": "text/html; charset=utf-8", "content-security-policy": CSP }),
  );
  app.openapi(
    createRoute({
      method: "get",
      path: "/docs/{file}",
      summary: "A file of the API reference page",
      request: {
        params: z.object({
          file: z.enum(FILES).openapi({ param: { name: "file", in: "path" }, example: "init.js" }),
        }),
      },
      responses: {
        200: {
          description: "The file",
          content: {
            "text/css": { schema: z.string() },
            "text/javascript": { schema: z.string() },
          },
        },
        ...problems(500),
      },
    }),
    async (c) => {
      const { file } = c.req.valid("param");
      let body = cache.get(file);
      if (!body) {
        body = file === "init.js" ? new TextEncoder().encode(INIT) : await assets.read(file);
        cache.set(file, body);
      }
      return c.body(body as Uint8Array<ArrayBuffer>, 200, {
        "content-type": TYPES[file],
        "cache-control": "public, max-age=3600",
      });
    },
  );
}
