// The chart's RBAC against what splitwise-controller calls: every call granted, nothing
// more. CALLS is the table of calls, each with where the code makes it; a scan of
// controller/ fails the test when the code names an API resource the table does not know
// (or the table keeps one the code dropped), so a new call cannot ship without its grant.
import assert from "node:assert/strict";
import { readFileSync, readdirSync, statSync } from "node:fs";
import { join, relative } from "node:path";
import { describe, test } from "node:test";
import { NAMESPACE, RELEASE, byKind, render, repo } from "./lib.mjs";

const FULLNAME = `${RELEASE}-splitwise`;

// group/resource -> verbs, for the rules that follow the watched namespace(s).
const CALLS = {
  "splitwise.io/inferenceclusters": {
    verbs: ["get", "list", "watch"],
    where: "manager.cpp informer (list+watch); reconciler.cpp write_status re-read (get)",
  },
  "splitwise.io/inferenceclusters/status": {
    verbs: ["update"],
    where: "reconciler.cpp write_status: update_status (PUT .../status)",
  },
  "/configmaps": {
    verbs: ["list", "watch", "create", "patch", "delete"],
    where: "manager.cpp child informers; reconciler.cpp list, apply (SSA: patch, create), remove",
  },
  "/services": {
    verbs: ["list", "watch", "create", "patch", "delete"],
    where: "as configmaps",
  },
  "apps/deployments": {
    verbs: ["list", "watch", "create", "patch", "delete"],
    where: "as configmaps",
  },
  "monitoring.coreos.com/servicemonitors": {
    verbs: ["list", "create", "patch", "delete"],
    where: "reconciler.cpp list, apply, remove (no informer)",
  },
  "/pods": { verbs: ["list"], where: "reconciler.cpp reconcile_valid: pods for status" },
  "/events": { verbs: ["create"], where: "reconciler.cpp emit_event" },
};
// The Lease, in the release namespace only.
const LEASE_RULES = [
  { group: "coordination.k8s.io", resource: "leases", verb: "create", names: [] },
  { group: "coordination.k8s.io", resource: "leases", verb: "get", names: ["splitwise-operator"] },
  {
    group: "coordination.k8s.io",
    resource: "leases",
    verb: "update",
    names: ["splitwise-operator"],
  },
];
const DISCOVERY_URL = "/apis/monitoring.coreos.com/v1";

function sources(dir) {
  const out = [];
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) out.push(...sources(p));
    else if (/\.(cpp|h)$/.test(name)) out.push(p);
  }
  return out;
}
const controllerSources = sources(join(repo, "controller")).map((p) => ({
  path: relative(repo, p),
  text: readFileSync(p, "utf8"),
}));
const constants = (() => {
  // kGroup, kVersion and kLeaseName as the headers define them.
  const out = {};
  for (const { text } of controllerSources) {
    for (const m of text.matchAll(
      /constexpr\s+(?:const\s+)?char\s*(?:const\s*)?\*?\s*(k\w+)(?:\[\])?\s*=\s*"([^"]*)"/g,
    )) {
      out[m[1]] = m[2];
    }
  }
  return out;
})();

// One row per (group, resource, verb); resourceNames kept apart.
function flatten(rules) {
  const rows = [];
  for (const r of rules) {
    assert.ok(!r.nonResourceURLs || !r.resources, "a rule mixes resources and URLs");
    for (const g of r.apiGroups ?? []) {
      for (const res of r.resources ?? []) {
        for (const verb of r.verbs)
          rows.push({ group: g, resource: res, verb, names: r.resourceNames ?? [] });
      }
    }
  }
  return rows;
}
const key = (r) =>
  `${r.group}/${r.resource}:${r.verb}${r.names.length ? `[${r.names.join(",")}]` : ""}`;
const expectedRows = () =>
  Object.entries(CALLS).flatMap(([gr, { verbs }]) => {
    const i = gr.indexOf("/");
    return verbs.map((verb) => ({
      group: gr.slice(0, i),
      resource: gr.slice(i + 1),
      verb,
      names: [],
    }));
  });

test("CALLS covers every API resource the controller names, and only those", () => {
  const found = new Set();
  // Resource literals: {group, version, "plural", namespaced}.
  const literal =
    /\{\s*("[^"]*"|kGroup)\s*,\s*("[^"]*"|kVersion)\s*,\s*"([a-z]+)"\s*,\s*(?:true|false)\s*\}/g;
  for (const { text } of controllerSources) {
    for (const m of text.matchAll(literal)) {
      const group = m[1] === "kGroup" ? constants.kGroup : JSON.parse(m[1]);
      found.add(`${group}/${m[3]}`);
    }
  }
  // update_status writes the status subresource of whatever it is called with.
  assert.ok(controllerSources.some((s) => /update_status\(kClusters/.test(s.text)));
  found.add(`${constants.kGroup}/inferenceclusters/status`);
  const leases = "coordination.k8s.io/leases";
  assert.ok(found.delete(leases), "the Lease resource moved: update LEASE_RULES");
  assert.deepEqual([...found].sort(), Object.keys(CALLS).sort());
});

test("the Lease name and the discovery call are the ones the code uses", () => {
  assert.equal(constants.kLeaseName, LEASE_RULES[1].names[0]);
  const discover = controllerSources.flatMap((s) => [
    ...s.text.matchAll(/discover\(\s*"([^"]+)"\s*,\s*"([^"]+)"/g),
  ]);
  assert.deepEqual(
    discover.map((m) => `/apis/${m[1]}/${m[2]}`),
    [DISCOVERY_URL],
  );
});

function checkCommon(objects) {
  for (const o of [...byKind(objects, "ClusterRole"), ...byKind(objects, "Role")]) {
    for (const r of o.rules) {
      for (const field of ["apiGroups", "resources", "verbs", "nonResourceURLs", "resourceNames"]) {
        assert.ok(
          !(r[field] ?? []).includes("*"),
          `${o.kind}/${o.metadata.name}: wildcard in ${field}`,
        );
      }
      for (const verb of ["escalate", "bind", "impersonate"]) assert.ok(!r.verbs.includes(verb));
      assert.ok(!(r.resources ?? []).includes("secrets"), "the operator reads no Secrets");
    }
  }
  // Each binding points at a role the chart renders, in the same scope.
  for (const b of [...byKind(objects, "RoleBinding"), ...byKind(objects, "ClusterRoleBinding")]) {
    const role = objects.find(
      (o) =>
        o.kind === b.roleRef.kind &&
        o.metadata.name === b.roleRef.name &&
        o.metadata.namespace === b.metadata.namespace,
    );
    assert.ok(
      role,
      `${b.kind}/${b.metadata.name} refers to a missing ${b.roleRef.kind}/${b.roleRef.name}`,
    );
    assert.deepEqual(b.subjects, [
      { kind: "ServiceAccount", name: FULLNAME, namespace: NAMESPACE },
    ]);
  }
}

const roleNamed = (objects, kind, name) =>
  objects.find((o) => o.kind === kind && o.metadata.name === name);

describe("rendered RBAC", () => {
  test("all namespaces: a ClusterRole with exactly the calls", () => {
    const objects = render();
    checkCommon(objects);
    const role = roleNamed(objects, "ClusterRole", FULLNAME);
    assert.deepEqual(flatten(role.rules).map(key).sort(), expectedRows().map(key).sort());
    assert.equal(byKind(objects, "Role").filter((r) => r.metadata.name === FULLNAME).length, 0);
    assert.ok(roleNamed(objects, "ClusterRoleBinding", FULLNAME));
  });

  test("one namespace: a Role there with exactly the calls, no cluster-wide grant", () => {
    const objects = render({ values: ["single-namespace.yaml"] });
    checkCommon(objects);
    const role = roleNamed(objects, "Role", FULLNAME);
    assert.equal(role.metadata.namespace, "inference");
    assert.deepEqual(flatten(role.rules).map(key).sort(), expectedRows().map(key).sort());
    assert.equal(roleNamed(objects, "RoleBinding", FULLNAME).metadata.namespace, "inference");
    const clusterRoles = byKind(objects, "ClusterRole");
    assert.deepEqual(
      clusterRoles.map((r) => r.metadata.name),
      [`${FULLNAME}-discovery`],
    );
  });

  test("leader election: create, and get/update on the one Lease, in the release namespace", () => {
    const objects = render();
    const role = roleNamed(objects, "Role", `${FULLNAME}-leader-election`);
    assert.equal(role.metadata.namespace, NAMESPACE);
    assert.deepEqual(flatten(role.rules).map(key).sort(), LEASE_RULES.map(key).sort());
    const off = render({ values: ["minimal.yaml"] });
    assert.equal(roleNamed(off, "Role", `${FULLNAME}-leader-election`), undefined);
  });

  test("discovery: GET of one URL, or nothing when turned off", () => {
    const role = roleNamed(render(), "ClusterRole", `${FULLNAME}-discovery`);
    assert.deepEqual(role.rules, [{ nonResourceURLs: [DISCOVERY_URL], verbs: ["get"] }]);
    const off = render({ values: ["minimal.yaml"] });
    assert.equal(roleNamed(off, "ClusterRole", `${FULLNAME}-discovery`), undefined);
  });

  test("rbac.create=false renders no RBAC", () => {
    const objects = render({ set: ["rbac.create=false"] });
    for (const kind of ["ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"]) {
      assert.equal(byKind(objects, kind).length, 0, kind);
    }
  });
});
