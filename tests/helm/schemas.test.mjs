// Rendered manifests against the Kubernetes schemas (npm kubernetes-models and its
// prometheus-operator sibling), and InferenceClusters (crds/examples/*.yaml and the one
// the chart renders) against the CRD's openAPIV3Schema with ajv. The CRD's CEL rules
// (x-kubernetes-validations) are not evaluated; the operator re-checks them itself.
import assert from "node:assert/strict";
import { readdirSync } from "node:fs";
import { createRequire } from "node:module";
import { join } from "node:path";
import { describe, test } from "node:test";
import Ajv from "ajv";
import { chartDir, matrix, parseManifests, readText, render, repo } from "./lib.mjs";

const require = createRequire(import.meta.url);

// apiVersion/kind -> model class. kubernetes-models lays modules out as
// <group>/<version>/<Kind> (core: v1/<Kind>); ServiceMonitor and PrometheusRule come from
// @kubernetes-models/prometheus-operator.
function modelClass(apiVersion, kind) {
  const [group, version] = apiVersion.includes("/") ? apiVersion.split("/") : ["", apiVersion];
  const pkg =
    group === "monitoring.coreos.com"
      ? "@kubernetes-models/prometheus-operator"
      : "kubernetes-models";
  const path = group ? `${pkg}/${group}/${version}/${kind}` : `${pkg}/${version}/${kind}`;
  const mod = require(path);
  const cls = mod[kind] ?? mod.default;
  assert.equal(typeof cls, "function", `${path} exports no ${kind}`);
  return cls;
}

function validateModel(object) {
  const Model = modelClass(object.apiVersion, object.kind);
  new Model(object).validate(); // throws with the JSON path of the first violation
}

// The CRD's schema as ajv sees it: Kubernetes' extensions are annotations, and the
// OpenAPI formats Kubernetes knows (int64, date-time, ...) are checked loosely.
const crdText = readText(join(repo, "crds/inferenceclusters.splitwise.io.yaml"));
const [crd] = parseManifests(crdText, "CRD");
const crdVersion = crd.spec.versions.find((v) => v.storage);
const ajv = new Ajv({ allErrors: true, strict: false });
for (const keyword of [
  "x-kubernetes-validations",
  "x-kubernetes-preserve-unknown-fields",
  "x-kubernetes-list-type",
  "x-kubernetes-list-map-keys",
  "x-kubernetes-int-or-string",
  "x-kubernetes-embedded-resource",
  "x-kubernetes-map-type",
]) {
  ajv.addKeyword({ keyword });
}
for (const format of [
  "int32",
  "int64",
  "float",
  "double",
  "byte",
  "date-time",
  "date",
  "quantity",
]) {
  ajv.addFormat(format, true);
}
const validateIC = ajv.compile(crdVersion.schema.openAPIV3Schema);

// Fields a structural schema would prune: the API server drops them silently, so a typo
// in an example or in values would go unnoticed without this.
function prunedFields(value, schema, path = "") {
  if (value === null || typeof value !== "object" || !schema) return [];
  if (schema["x-kubernetes-preserve-unknown-fields"]) return [];
  if (Array.isArray(value))
    return value.flatMap((v, i) => prunedFields(v, schema.items, `${path}[${i}]`));
  const out = [];
  for (const [k, v] of Object.entries(value)) {
    if (path === "" && ["apiVersion", "kind", "metadata"].includes(k)) continue;
    const sub =
      schema.properties?.[k] ??
      (typeof schema.additionalProperties === "object" ? schema.additionalProperties : undefined);
    if (!sub) out.push(`${path}.${k}`);
    else out.push(...prunedFields(v, sub, `${path}.${k}`));
  }
  return out;
}

function checkInferenceCluster(ic, source) {
  assert.equal(ic.apiVersion, `${crd.spec.group}/${crdVersion.name}`, source);
  assert.equal(ic.kind, crd.spec.names.kind, source);
  const ok = validateIC(ic);
  assert.ok(ok, `${source}: ${ajv.errorsText(validateIC.errors, { dataVar: "object" })}`);
  assert.deepEqual(
    prunedFields(ic, crdVersion.schema.openAPIV3Schema),
    [],
    `${source}: unknown fields`,
  );
}

describe("rendered manifests validate against the Kubernetes schemas", () => {
  for (const c of matrix()) {
    test(c.name, () => {
      for (const o of render(c)) {
        if (o.kind === "InferenceCluster") checkInferenceCluster(o, `${c.name}: InferenceCluster`);
        else assert.doesNotThrow(() => validateModel(o), `${c.name}: ${o.kind}/${o.metadata.name}`);
      }
    });
  }

  test("the validator is not a no-op", () => {
    const bad = {
      apiVersion: "apps/v1",
      kind: "Deployment",
      metadata: { name: "x" },
      spec: {
        selector: {},
        template: { spec: { containers: [{ name: "c", ports: [{ containerPort: "http" }] }] } },
      },
    };
    assert.throws(() => validateModel(bad), /containerPort/);
    const sm = {
      apiVersion: "monitoring.coreos.com/v1",
      kind: "ServiceMonitor",
      metadata: { name: "x" },
      spec: { selector: {}, endpoints: [{ port: "metrics", interval: "soon" }] },
    };
    assert.throws(() => validateModel(sm), /interval/);
  });
});

describe("InferenceClusters validate against the CRD schema", () => {
  test("the CRD is a valid CustomResourceDefinition", () => {
    validateModel(crd);
    assert.equal(crd.spec.versions.filter((v) => v.storage).length, 1);
  });

  const examplesDir = join(repo, "crds/examples");
  const examples = readdirSync(examplesDir).filter((f) => f.endsWith(".yaml"));
  test("there are examples", () => assert.ok(examples.length >= 1));
  for (const file of examples) {
    test(`crds/examples/${file}`, () => {
      const objects = parseManifests(readText(join(examplesDir, file)), file);
      assert.ok(objects.length >= 1);
      for (const o of objects) checkInferenceCluster(o, file);
    });
  }

  test("the chart's default inferenceCluster.spec", () => {
    const [ic] = render({ set: ["inferenceCluster.create=true"] }).filter(
      (o) => o.kind === "InferenceCluster",
    );
    checkInferenceCluster(ic, "default values");
  });

  // The checks catch what they should: each broken copy of a valid example fails.
  const base = () => structuredClone(parseManifests(readText(join(examplesDir, examples[0])))[0]);
  // [mutation, what the error must say]
  const broken = {
    "unknown gpuType": [
      (ic) => (ic.spec.pools.prompt.gpuType = "TPU"),
      /pools\/prompt\/gpuType must be equal to one of the allowed values/,
    ],
    "negative replicas": [
      (ic) => (ic.spec.pools.prompt.replicas = -1),
      /pools\/prompt\/replicas must be >= 0/,
    ],
    "no model name": [(ic) => delete ic.spec.model.name, /must have required property 'name'/],
    "no spec": [(ic) => delete ic.spec, /must have required property 'spec'/],
    "string where an integer goes": [
      (ic) => (ic.spec.pools.prompt.maxBatchTokens = "2048"),
      /maxBatchTokens must be integer/,
    ],
    "unknown kvTransfer": [
      (ic) => (ic.spec.kvTransfer = "rdma"),
      /kvTransfer must be equal to one of the allowed values/,
    ],
    "a typo the API server would prune": [
      (ic) => (ic.spec.pools.prompt.replica = 2),
      /unknown fields[\s\S]*\.spec\.pools\.prompt\.replica\b/,
    ],
  };
  for (const [name, [mutate, want]] of Object.entries(broken)) {
    test(`rejects: ${name}`, () => {
      const ic = base();
      mutate(ic);
      assert.throws(() => checkInferenceCluster(ic, name), want);
    });
  }
});

test("values.schema.json is valid JSON Schema (draft-07)", () => {
  const schema = JSON.parse(readText(join(chartDir, "values.schema.json")));
  assert.equal(schema.$schema, "http://json-schema.org/draft-07/schema#");
  new Ajv({ strict: false }).compile(schema);
});
