// helm lint and helm template of helm/splitwise: the defaults and every tests/helm/ci/*.yaml,
// with and without the monitoring.coreos.com/v1 API; labels, hardening, wiring between the
// objects, dashboards and alert rules with and without their files, values the chart
// must refuse, and the CRD copy.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, readdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, test } from "node:test";
import { parse } from "yaml";
import {
  NAMESPACE,
  RELEASE,
  byKind,
  chartCopy,
  chartDir,
  ciDir,
  ciValues,
  helm,
  here,
  matrix,
  one,
  readText,
  render,
  renderError,
  repo,
} from "./lib.mjs";

const FULLNAME = `${RELEASE}-splitwise`;
const chartValues = parse(readText(join(chartDir, "values.yaml")));
const dashboardFiles = existsSync(join(chartDir, "dashboards"))
  ? readdirSync(join(chartDir, "dashboards")).filter((f) => f.endsWith(".json"))
  : [];
const rulesFile = join(chartDir, "rules/splitwise-alerts.yaml");

// Kinds the chart may render; anything else is a template gone astray.
const KINDS = new Set([
  "ServiceAccount",
  "ClusterRole",
  "ClusterRoleBinding",
  "Role",
  "RoleBinding",
  "Service",
  "Deployment",
  "ConfigMap",
  "ServiceMonitor",
  "PrometheusRule",
  "InferenceCluster",
]);
const CLUSTER_SCOPED = new Set(["ClusterRole", "ClusterRoleBinding"]);

function valuesOf(file) {
  return file ? parse(readText(join(ciDir, file))) : {};
}

test("helm lint --strict: defaults and every ci values file", () => {
  for (const file of [null, ...ciValues]) {
    const args = ["lint", "--strict", chartDir];
    if (file) args.push("--values", join(ciDir, file));
    const r = helm(args);
    assert.equal(r.status, 0, `helm ${args.join(" ")}\n${r.stdout}${r.stderr}`);
    assert.match(r.stdout, /1 chart\(s\) linted, 0 chart\(s\) failed/);
  }
});

describe("helm template", () => {
  for (const c of matrix()) {
    test(c.name, () => {
      const objects = render(c);
      const v = valuesOf(c.values[0]);
      const seen = new Set();
      for (const o of objects) {
        const where = `${o.kind}/${o.metadata?.name}`;
        assert.ok(KINDS.has(o.kind), `unexpected kind in ${where}`);
        assert.ok(o.metadata?.name, `${o.kind} without a name`);
        const key = `${o.kind}/${o.metadata.namespace ?? ""}/${o.metadata.name}`;
        assert.ok(!seen.has(key), `${key} rendered twice`);
        seen.add(key);
        // Namespaced objects name their namespace, so `helm template | kubectl apply`
        // puts them where `helm install` would.
        if (CLUSTER_SCOPED.has(o.kind)) assert.equal(o.metadata.namespace, undefined, where);
        else assert.ok(o.metadata.namespace, `${where} has no namespace`);
        const labels = o.metadata.labels ?? {};
        for (const k of ["name", "instance", "version", "managed-by", "part-of"]) {
          assert.ok(labels[`app.kubernetes.io/${k}`], `${where} lacks app.kubernetes.io/${k}`);
        }
        assert.equal(labels["app.kubernetes.io/instance"], RELEASE, where);
        assert.equal(labels["app.kubernetes.io/managed-by"], "Helm", where);
        assert.match(labels["helm.sh/chart"] ?? "", /^splitwise-\d+\.\d+\.\d+/, where);
        assert.ok(labels["app.kubernetes.io/component"], `${where} lacks a component label`);
      }

      // ServiceMonitor and PrometheusRule exist only where the cluster serves their API.
      const wantMonitor = c.monitoring && v.metrics?.serviceMonitor?.enabled !== false;
      assert.equal(byKind(objects, "ServiceMonitor").length, wantMonitor ? 1 : 0, "ServiceMonitor");
      const wantRule = c.monitoring && v.prometheusRule?.enabled !== false && existsSync(rulesFile);
      assert.equal(byKind(objects, "PrometheusRule").length, wantRule ? 1 : 0, "PrometheusRule");

      // One dashboard ConfigMap per dashboards/*.json in the chart, unless turned off.
      const dashboards = byKind(objects, "ConfigMap").filter(
        (o) => o.metadata.labels["app.kubernetes.io/component"] === "dashboard",
      );
      const wantDashboards = v.dashboards?.enabled === false ? 0 : dashboardFiles.length;
      assert.equal(dashboards.length, wantDashboards, "dashboard ConfigMaps");

      assert.equal(byKind(objects, "InferenceCluster").length, v.inferenceCluster?.create ? 1 : 0);
      assert.equal(byKind(objects, "Deployment").length, 1);
    });
  }
});

describe("operator Deployment", () => {
  const flags = (() => {
    // The flags splitwise-controller defines (CLI11 add_option/add_flag names).
    const src = readText(join(repo, "controller/controller_main.cpp"));
    const out = new Set();
    for (const m of src.matchAll(/add_(?:option|flag)\(\s*"([^"]+)"/g)) {
      for (const name of m[1].split(",")) out.add(name.replace(/^!/, ""));
    }
    return out;
  })();

  for (const file of [null, ...ciValues]) {
    test(file ?? "defaults", () => {
      const objects = render({ values: file ? [file] : [], monitoring: true });
      const v = valuesOf(file);
      const deploy = one(objects, "Deployment");
      const pod = deploy.spec.template.spec;
      assert.equal(pod.containers.length, 1);
      const [c] = pod.containers;

      // Pod labels carry the selector; the selector is the operator's alone.
      for (const [k, val] of Object.entries(deploy.spec.selector.matchLabels)) {
        assert.equal(deploy.spec.template.metadata.labels[k], val, `pod label ${k}`);
      }
      assert.equal(deploy.spec.selector.matchLabels["app.kubernetes.io/component"], "operator");

      // Hardening: non-root, read-only root, no privilege escalation, no capabilities.
      assert.equal(pod.securityContext.runAsNonRoot, true);
      assert.ok(pod.securityContext.runAsUser > 0);
      assert.equal(pod.securityContext.seccompProfile?.type, "RuntimeDefault");
      assert.equal(c.securityContext.runAsNonRoot, true);
      assert.equal(c.securityContext.readOnlyRootFilesystem, true);
      assert.equal(c.securityContext.allowPrivilegeEscalation, false);
      assert.deepEqual(c.securityContext.capabilities?.drop, ["ALL"]);
      assert.ok(c.resources?.requests?.memory && c.resources?.limits?.memory, "memory bounded");
      assert.equal(pod.automountServiceAccountToken, true, "in-cluster config needs the token");

      // Every flag exists in controller_main.cpp; the metrics port is the one served.
      const args = new Map(c.args.map((a) => [a.split("=")[0], a.split("=").slice(1).join("=")]));
      for (const name of args.keys())
        assert.ok(flags.has(name), `${name} is not a controller flag`);
      assert.deepEqual(c.command, ["splitwise-controller"]);
      const port = c.ports.find((p) => p.name === "metrics");
      assert.equal(String(port.containerPort), args.get("--metrics-port"));
      const leader = v.operator?.leaderElection?.enabled !== false;
      if (leader) {
        assert.ok(args.has("--leader-elect"));
        assert.equal(args.get("--lease-namespace"), NAMESPACE);
      } else {
        assert.ok(args.has("--no-leader-elect"));
      }
      const watch = v.operator?.watchNamespace;
      assert.equal(args.get("--namespace"), watch, "--namespace follows operator.watchNamespace");
      assert.equal(
        args.get("--image"),
        v.operator?.workloadImage ?? "ghcr.io/splitwise/splitwise:0.1.0",
      );

      // Probes hit the served paths on the named port, unless turned off.
      if (v.livenessProbe !== null) {
        assert.equal(c.livenessProbe.httpGet.path, "/healthz");
        assert.equal(c.livenessProbe.httpGet.port, "metrics");
        assert.equal(c.readinessProbe.httpGet.path, "/readyz");
      } else {
        assert.equal(c.livenessProbe, undefined);
      }

      // Service -> pods, ServiceMonitor -> Service port.
      const svc = byKind(objects, "Service").find((s) => s.metadata.name === `${FULLNAME}-metrics`);
      for (const [k, val] of Object.entries(svc.spec.selector)) {
        assert.equal(deploy.spec.template.metadata.labels[k], val, `service selector ${k}`);
      }
      assert.equal(svc.spec.ports[0].targetPort, "metrics");
      const sm = byKind(objects, "ServiceMonitor")[0];
      if (sm) {
        for (const [k, val] of Object.entries(sm.spec.selector.matchLabels)) {
          assert.equal(svc.metadata.labels[k], val, `ServiceMonitor selector ${k}`);
        }
        assert.equal(sm.spec.endpoints[0].port, svc.spec.ports[0].name);
        assert.equal(sm.spec.endpoints[0].path, "/metrics");
        assert.equal(sm.spec.endpoints[0].honorLabels, true);
        for (const [k, val] of Object.entries(v.metrics?.serviceMonitor?.labels ?? {})) {
          assert.equal(sm.metadata.labels[k], val);
        }
      }

      // The service account the pod uses is the one the bindings name.
      const sa = pod.serviceAccountName;
      assert.equal(sa, v.serviceAccount?.name ?? FULLNAME);
      assert.equal(
        byKind(objects, "ServiceAccount").length,
        v.serviceAccount?.create === false ? 0 : 1,
      );
      for (const b of [
        ...byKind(objects, "RoleBinding"),
        ...byKind(objects, "ClusterRoleBinding"),
      ]) {
        assert.deepEqual(b.subjects, [{ kind: "ServiceAccount", name: sa, namespace: NAMESPACE }]);
      }
    });
  }

  test("image digest wins over the tag", () => {
    const [c] = one(render({ values: ["minimal.yaml"] }), "Deployment").spec.template.spec
      .containers;
    assert.match(c.image, /^ghcr\.io\/splitwise\/splitwise-controller@sha256:[0-9a-f]{64}$/);
  });
});

describe("dashboards and alert rules", () => {
  const dashboard = (title) =>
    JSON.stringify(
      {
        title,
        panels: [{ targets: [{ legendFormat: "{{pod}} {{ $labels }}" }] }],
        schemaVersion: 39,
      },
      null,
      2,
    );
  const rules = [
    "# a comment the PrometheusRule does not need",
    "groups:",
    "  - name: splitwise-test",
    "    rules:",
    "      - alert: SplitwiseTest",
    "        expr: up == 0",
    "        for: 5m",
    "        labels: {severity: warning}",
    "        annotations:",
    '          summary: "{{ $labels.instance }} is down ({{ $value }})"',
    "",
  ].join("\n");

  test("no dashboards/ or rules/: no ConfigMaps, no PrometheusRule, even with the API", (t) => {
    const { chart, cleanup } = chartCopy();
    t.after(cleanup);
    assert.equal(helm(["lint", "--strict", chart]).status, 0);
    const objects = render({ chart, monitoring: true });
    assert.equal(byKind(objects, "ConfigMap").length, 0);
    assert.equal(byKind(objects, "PrometheusRule").length, 0);
    assert.equal(byKind(objects, "ServiceMonitor").length, 1);
  });

  test("one ConfigMap per dashboard, sidecar label, content as in the file", (t) => {
    const files = {
      "splitwise-overview.json": dashboard("Splitwise overview"),
      "KV_Transfer.json": dashboard("KV transfer"),
      "a-very-long-dashboard-file-name-that-would-not-fit-in-a-kubernetes-name.json":
        dashboard("long 1"),
      "a-very-long-dashboard-file-name-that-would-not-fit-in-a-kubernetes-name-2.json":
        dashboard("long 2"),
    };
    const { chart, cleanup } = chartCopy({ dashboards: files, rules });
    t.after(cleanup);
    for (const [values, label, value, ns] of [
      [[], "grafana_dashboard", "1", NAMESPACE],
      [["dashboard-label.yaml"], "splitwise.io/grafana-dashboard", "true", "monitoring"],
    ]) {
      const cms = byKind(render({ chart, values }), "ConfigMap");
      assert.equal(cms.length, Object.keys(files).length);
      const names = new Set();
      for (const cm of cms) {
        assert.equal(cm.metadata.labels[label], value, `${cm.metadata.name} sidecar label`);
        assert.equal(cm.metadata.namespace, ns);
        assert.ok(
          cm.metadata.name.length <= 63 && /^[a-z0-9]([-a-z0-9]*[a-z0-9])?$/.test(cm.metadata.name),
          cm.metadata.name,
        );
        names.add(cm.metadata.name);
        const [key, text] = Object.entries(cm.data)[0];
        assert.equal(Object.keys(cm.data).length, 1);
        assert.ok(key in files, key);
        assert.deepEqual(JSON.parse(text), JSON.parse(files[key]), `${key} content`);
      }
      assert.equal(names.size, cms.length, "ConfigMap names are unique");
      if (values.length) {
        assert.equal(cms[0].metadata.annotations.grafana_folder, "Splitwise");
      }
    }
    assert.equal(
      byKind(render({ chart, set: ["dashboards.enabled=false"] }), "ConfigMap").length,
      0,
    );
  });

  test("the rule file becomes a PrometheusRule, templates in annotations untouched", (t) => {
    const { chart, cleanup } = chartCopy({ rules });
    t.after(cleanup);
    assert.equal(
      byKind(render({ chart }), "PrometheusRule").length,
      0,
      "no API, no PrometheusRule",
    );
    const rule = one(
      render({ chart, values: ["inference-cluster.yaml"], monitoring: true }),
      "PrometheusRule",
    );
    assert.deepEqual(rule.spec.groups, parse(rules).groups);
    assert.equal(rule.metadata.labels.release, "kube-prometheus-stack");
    assert.equal(
      rule.spec.groups[0].rules[0].annotations.summary,
      "{{ $labels.instance }} is down ({{ $value }})",
    );
    const off = render({ chart, monitoring: true, set: ["prometheusRule.enabled=false"] });
    assert.equal(byKind(off, "PrometheusRule").length, 0);
  });

  test("a rule file without groups fails the render with its name", (t) => {
    const { chart, cleanup } = chartCopy({ rules: "rules: []\n" });
    t.after(cleanup);
    assert.match(
      renderError({ chart, monitoring: true }),
      /rules\/splitwise-alerts\.yaml: want a Prometheus rule file/,
    );
  });

  test("the chart's own rule file, when present, renders as its groups", () => {
    if (!existsSync(rulesFile)) return;
    const rule = one(render({ monitoring: true }), "PrometheusRule");
    assert.deepEqual(rule.spec.groups, parse(readText(rulesFile)).groups);
  });
});

describe("InferenceCluster from values", () => {
  test("defaults merge with the values file; null removes a default", () => {
    const ic = one(render({ values: ["cpu-only.yaml"] }), "InferenceCluster");
    assert.equal(ic.metadata.name, "stories-dev");
    assert.equal(ic.metadata.namespace, NAMESPACE);
    assert.equal(ic.spec.model.pvc, undefined, "pvc: null dropped the default claim");
    assert.equal(ic.spec.model.hostPath, "/shared/models/stories260K");
    assert.equal(ic.spec.pools.prompt.gpuType, "CPU");
    assert.equal(ic.spec.pools.prompt.maxReplicas, undefined);
    assert.equal(ic.spec.kvTransfer, "tcp");
  });

  test("the HA default spec with overrides", () => {
    const ic = one(render({ values: ["inference-cluster.yaml"] }), "InferenceCluster");
    assert.equal(ic.apiVersion, "splitwise.io/v1alpha1");
    assert.equal(ic.metadata.name, "llama3-8b");
    assert.equal(ic.metadata.labels.team, "serving");
    assert.deepEqual(ic.spec.model, {
      name: "llama-3-8b-instruct",
      pvc: { claimName: "llama-weights" },
      path: "Meta-Llama-3-8B-Instruct",
    });
    assert.equal(ic.spec.pools.prompt.gpuType, "H100");
    assert.equal(ic.spec.pools.token.replicas, 3);
    assert.equal(ic.spec.router.serviceType, "LoadBalancer");
  });

  test("single namespace: the cluster lives where the operator looks", () => {
    const objects = render({ values: ["single-namespace.yaml"] });
    assert.equal(one(objects, "InferenceCluster").metadata.namespace, "inference");
    const msg = renderError({
      values: ["single-namespace.yaml"],
      set: ["inferenceCluster.namespace=elsewhere"],
    });
    assert.match(
      msg,
      /inferenceCluster.namespace "elsewhere" is not operator.watchNamespace "inference"/,
    );
  });
});

describe("values the chart refuses", () => {
  const cases = [
    [["operator.workers=0"], /operator\.workers: Must be greater than or equal to 1/],
    [["operator.logLevel=loud"], /operator\.logLevel must be one of/],
    [["unknownTopLevelKey=1"], /Additional property unknownTopLevelKey is not allowed/],
    [["operator.leaderElection.typo=1"], /Additional property typo is not allowed/],
    [["dashboards.label=not a label"], /dashboards\.label: Does not match pattern/],
    [["image.digest=latest"], /image\.digest: Does not match pattern/],
    [["operator.watchNamespace=Not_A_Namespace"], /operator\.watchNamespace: Does not match/],
    [
      ["operator.leaderElection.renewDeadlineSeconds=20"],
      /need retryPeriodSeconds < renewDeadlineSeconds < leaseDurationSeconds \(got 2 < 20 < 15\)/,
    ],
    [["serviceAccount.create=false"], /serviceAccount\.name is required/],
  ];

  for (const [set, pattern] of cases) {
    test(set.join(" "), () => assert.match(renderError({ set }), pattern));
  }
});

describe("CRD", () => {
  test("the chart's CRD is byte-identical to crds/ (tests/helm/sync_chart_crd.sh)", () => {
    const src = readText(join(repo, "crds/inferenceclusters.splitwise.io.yaml"));
    const copy = readText(join(chartDir, "crds/inferenceclusters.splitwise.io.yaml"));
    assert.ok(src === copy, "out of date: run tests/helm/sync_chart_crd.sh");
    assert.deepEqual(readdirSync(join(chartDir, "crds")), ["inferenceclusters.splitwise.io.yaml"]);
    const check = spawnSync(join(here, "sync_chart_crd.sh"), ["--check"], { encoding: "utf8" });
    assert.equal(check.status, 0, check.stderr);
  });

  test("--include-crds renders the CRD and Helm never templates it", () => {
    const objects = render({ extra: ["--include-crds"] });
    const crd = one(objects, "CustomResourceDefinition");
    assert.equal(crd.metadata.name, "inferenceclusters.splitwise.io");
    assert.deepEqual(crd, parse(readText(join(repo, "crds/inferenceclusters.splitwise.io.yaml"))));
  });
});

// `helm install --dry-run` needs a cluster, and `helm template` leaves NOTES.txt out; so a
// copy of the chart renders the same text as a named template into a ConfigMap.
test("NOTES.txt renders for every values file", (t) => {
  const { chart, cleanup } = chartCopy({ keep: true });
  t.after(cleanup);
  const notes = readText(join(chart, "templates/NOTES.txt"));
  writeFileSync(
    join(chart, "templates/_notes_under_test.tpl"),
    `{{- define "notes.under.test" -}}\n${notes}{{- end }}\n`,
  );
  writeFileSync(
    join(chart, "templates/notes-under-test.yaml"),
    "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: notes-under-test, namespace: x}\n" +
      'data: {NOTES.txt: {{ include "notes.under.test" . | toJson }}}\n',
  );
  for (const file of [null, ...ciValues]) {
    for (const monitoring of [false, true]) {
      const objects = render({ chart, values: file ? [file] : [], monitoring });
      const text = objects.find((o) => o.metadata.name === "notes-under-test").data["NOTES.txt"];
      const where = `${file ?? "defaults"}${monitoring ? " +monitoring" : ""}`;
      assert.match(text, new RegExp(`rollout status deployment/${FULLNAME}`), where);
      assert.doesNotMatch(text, /<no value>|%!/, `${where}: a value is missing in\n${text}`);
      if (monitoring && valuesOf(file).metrics?.serviceMonitor?.enabled !== false) {
        assert.match(text, /ServiceMonitor \S+ created/, where);
      }
      if (!monitoring) assert.match(text, /No ServiceMonitor or PrometheusRule/, where);
      const ic = valuesOf(file).inferenceCluster;
      if (ic?.create) {
        assert.match(text, /port-forward service\/\S+-router 8000:8000/, where);
        assert.match(
          text,
          new RegExp(
            `"model": "${ic.spec?.model?.name ?? chartValues.inferenceCluster.spec.model.name}"`,
          ),
          where,
        );
      } else {
        assert.match(text, /crds\/examples/, where);
      }
    }
  }
});

test("README documents every value", () => {
  const readme = readText(join(chartDir, "README.md"));
  // Objects documented as a whole (Kubernetes types or the CRD's spec).
  const whole = new Set([
    "podSecurityContext",
    "securityContext",
    "resources",
    "livenessProbe",
    "readinessProbe",
    "inferenceCluster.spec",
  ]);
  const missing = [];
  const walk = (obj, path) => {
    for (const [k, val] of Object.entries(obj)) {
      const p = path ? `${path}.${k}` : k;
      const leaf =
        val === null || typeof val !== "object" || Array.isArray(val) || !Object.keys(val).length;
      if (leaf || whole.has(p)) {
        if (!readme.includes(`\`${p}\``)) missing.push(p);
      } else {
        walk(val, p);
      }
    }
  };
  walk(chartValues, "");
  assert.deepEqual(missing, [], "values missing from helm/splitwise/README.md");
});
