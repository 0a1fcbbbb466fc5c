/**
 * Builds the SST app offline, the way `sst deploy` does (initProject → App → stacks → finish → synth), and
 * returns each stack's CloudFormation template and cdk-nag findings. Nothing here reaches AWS.
 *
 * One step is replaced: SST's esbuild bundling of the Lambda handlers. In deploy mode SST bundles every handler
 * file during `app.finish()` and fails if the file is missing; these tests are about the infrastructure, so the
 * Node runtime's build step is swapped for one that records which handler each function asked for and emits a
 * placeholder bundle. Everything else SST does to a function (runtime, architecture, handler string, role,
 * environment) is as deployed. `sst deploy` bundles the real handlers in functions/.
 */
import { mkdirSync, mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Template } from "aws-cdk-lib/assertions";
import type { CloudFormationStackArtifact } from "aws-cdk-lib/cx-api";
import { App } from "sst/constructs";
import { initProject, setProject, useProject } from "sst/project.js";
import { useRuntimeHandlers } from "sst/runtime/handlers.js";
import { auditsink } from "../../stacks/index.ts";
import type { StageSettings } from "../../stacks/settings.ts";

export const ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), "../..");
export const OUTPUT = path.join(ROOT, "test/output/infra");
export const ACCOUNT = "123456789012";
export const REGION = "eu-central-1";

export interface NagFinding {
  stack: string;
  level: "error" | "warning" | "info";
  rule: string;
  path: string;
  message: string;
}

export interface Synth {
  app: App;
  stage: string;
  /** Templates by the stack's short name ("Archive", "Ingest", …). */
  templates: Record<string, Template>;
  json: Record<string, TemplateJson>;
  findings: NagFinding[];
  /** Handlers SST asked to bundle, one per function (including the handler path it will deploy). */
  bundled: { handler: string; runtime: string; architecture: string | undefined }[];
  /** Where the templates were written. */
  outputDir: string;
}

export interface TemplateJson {
  Resources: Record<string, { Type: string; Properties?: Record<string, unknown>; [key: string]: unknown }>;
  Outputs?: Record<string, unknown>;
}

let bundled: Synth["bundled"] = [];

/** Replaces the Node runtime's esbuild step (see the file comment). */
function stubNodeBundling(): void {
  const node = useRuntimeHandlers().for("nodejs22.x");
  node.build = async (input) => {
    const handler = input.props.handler ?? "";
    if (!/^functions\/[a-z-]+\.handler$/.test(handler)) {
      return { type: "error", errors: [`unexpected handler "${handler}"`] };
    }
    bundled.push({ handler, runtime: input.props.runtime ?? "", architecture: input.props.architecture });
    mkdirSync(path.join(input.out, "functions"), { recursive: true });
    writeFileSync(
      path.join(input.out, `${handler.replace(/\.handler$/, "")}.mjs`),
      "export const handler = () => {};\n",
    );
    return { type: "success", handler };
  };
}

/**
 * Synthesizes every stack of the app for `stage` with `settings`, writes the templates under
 * test/output/infra/<stage>/ and returns them.
 */
export function synthesize(stage: string, settings: Partial<StageSettings>): Promise<Synth> {
  return synthesizeWith(stage, (app) => auditsink(app, settings));
}

/**
 * Synthesizes the app exactly as sst.config.ts builds it, with `env` as the process environment the stage
 * settings are read from (SST loads .env.<stage> into process.env before calling `stacks`).
 */
export async function synthesizeConfig(stage: string, env: Record<string, string>): Promise<Synth> {
  const { default: config } = await import("../../sst.config.ts");
  const saved = { ...process.env };
  Object.assign(process.env, env);
  try {
    return await synthesizeWith(stage, (app) => config.stacks(app));
  } finally {
    for (const key of Object.keys(env)) {
      if (saved[key] === undefined) delete process.env[key];
      else process.env[key] = saved[key];
    }
  }
}

/** Synthesizes whatever `build` adds to a fresh app (for tests that need more than the sink's own stacks). */
export async function synthesizeWith(
  stage: string,
  build: (app: App) => void | Promise<void>,
): Promise<Synth> {
  if (process.env.NODE_ENV !== "test") throw new Error("SST must run in test mode (NODE_ENV=test)");
  await initProject({ stage, region: REGION, root: ROOT });
  // A private SST output directory per test process: SST clears and rewrites <out>/types whenever an App is
  // created, which would race between test files running in parallel.
  const out = path.join(OUTPUT, ".sst", String(process.pid));
  mkdirSync(out, { recursive: true });
  const project = useProject();
  setProject({ ...project, paths: { ...project.paths, out, artifacts: path.join(out, "artifacts") } });
  const cdkOut = mkdtempSync(path.join(out, "cdk.out-"));

  bundled = [];
  stubNodeBundling();
  const app = new App(
    { mode: "deploy", stage, region: REGION, account: ACCOUNT, name: project.config.name },
    { outdir: cdkOut },
  );
  try {
    await build(app);
    await app.finish();
  } catch (error) {
    rmSync(out, { recursive: true, force: true });
    throw error;
  }
  const assembly = app.synth();

  const outputDir = path.join(OUTPUT, stage);
  mkdirSync(outputDir, { recursive: true });
  const templates: Synth["templates"] = {};
  const json: Synth["json"] = {};
  const findings: NagFinding[] = [];
  const prefix = `${stage}-${project.config.name}-`;
  for (const artifact of assembly.stacks as CloudFormationStackArtifact[]) {
    const name = artifact.stackName.startsWith(prefix)
      ? artifact.stackName.slice(prefix.length)
      : artifact.stackName;
    json[name] = artifact.template as TemplateJson;
    templates[name] = Template.fromJSON(artifact.template);
    writeFileSync(
      path.join(outputDir, `${artifact.stackName}.template.json`),
      JSON.stringify(artifact.template, null, 2),
    );
    for (const message of artifact.messages) {
      const text = String(message.entry.data);
      const rule = /^(AwsSolutions-[A-Za-z0-9]+)/.exec(text)?.[1];
      if (!rule) continue;
      findings.push({ stack: name, level: message.level, rule, path: message.id, message: text });
    }
  }
  writeAtomically(path.join(outputDir, "nag-findings.json"), findings);
  // The cloud assembly holds a copy of SST's 4.6 MB custom-resource bundle per stack; the templates are kept.
  rmSync(out, { recursive: true, force: true });
  return { app, stage, templates, json, findings, bundled: [...bundled], outputDir };
}

/** Test files synthesize the same stage in parallel: a reader must never see a half-written template. */
function writeAtomically(file: string, value: unknown): void {
  const temporary = `${file}.${process.pid}.tmp`;
  writeFileSync(temporary, `${JSON.stringify(value, null, 2)}\n`);
  renameSync(temporary, file);
}

/** The resources of one type in a template, by logical id. */
export function resourcesOf(template: TemplateJson, type: string): [string, Record<string, unknown>][] {
  return Object.entries(template.Resources)
    .filter(([, resource]) => resource.Type === type)
    .map(([id, resource]) => [id, resource.Properties ?? {}]);
}

/** Every resource of every stack. */
export function allResources(
  synth: Synth,
): { stack: string; id: string; type: string; resource: TemplateJson["Resources"][string] }[] {
  return Object.entries(synth.json).flatMap(([stack, template]) =>
    Object.entries(template.Resources).map(([id, resource]) => ({
      stack,
      id,
      type: resource.Type,
      resource,
    })),
  );
}
