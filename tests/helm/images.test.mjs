// scripts/images/*.Dockerfile cannot be built here (no container engine), so this checks
// what can be checked without one: the build stage runs the project's own setup.sh and
// build.sh; every binary copied out of it is an executable CMake target the build was
// asked for, at the path CMake puts it; every other copied path is made by a RUN of that
// stage; the final USER is a numeric non-root uid; the entrypoint and the commands the
// chart and the operator run are in the image; base images pair up (same CUDA release,
// same distro for build and runtime). bundle_libs.sh runs for real on a built router.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { existsSync, mkdtempSync, readFileSync, readdirSync, rmSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { basename, dirname, join, relative } from "node:path";
import { describe, test } from "node:test";
import { one, readText, render, repo } from "./lib.mjs";

const imagesDir = join(repo, "scripts/images");
const dockerfiles = readdirSync(imagesDir)
  .filter((f) => f.endsWith(".Dockerfile"))
  .sort();

// Instructions of a Dockerfile: continuation lines joined, comments dropped.
function parseDockerfile(text) {
  const lines = text.split("\n").filter((l) => !/^\s*#/.test(l));
  const joined = lines.join("\n").replace(/\\\n/g, " ");
  const out = [];
  for (const line of joined.split("\n")) {
    const m = line.trim().match(/^([A-Za-z]+)\s+(.*)$/);
    if (m) out.push({ op: m[1].toUpperCase(), args: m[2].trim() });
  }
  return out;
}

// Stages: {name, from, instructions}; ARG defaults before the first FROM substituted.
function stagesOf(instructions) {
  const globalArgs = {};
  const stages = [];
  for (const ins of instructions) {
    if (ins.op === "ARG" && !stages.length) {
      const [k, v = ""] = ins.args.split("=");
      globalArgs[k] = v.replace(/^"|"$/g, "");
    } else if (ins.op === "FROM") {
      const m = ins.args.match(/^(\S+)(?:\s+AS\s+(\S+))?$/i);
      const from = m[1].replace(/\$\{(\w+)\}/g, (_, k) => globalArgs[k] ?? `\${${k}}`);
      stages.push({ name: m[2] ?? null, from, instructions: [] });
    } else {
      assert.ok(stages.length, `${ins.op} before FROM`);
      stages.at(-1).instructions.push(ins);
    }
  }
  return { stages, globalArgs };
}

// Executable targets: add_executable(name ...) per CMakeLists.txt directory.
const executables = (() => {
  const out = new Map(); // name -> directory relative to the repository
  const walk = (dir) => {
    for (const name of readdirSync(dir)) {
      if (
        name.startsWith(".") ||
        name.startsWith("build") ||
        name === "node_modules" ||
        name === "tests"
      )
        continue;
      const p = join(dir, name);
      if (statSync(p).isDirectory()) walk(p);
      else if (name === "CMakeLists.txt") {
        for (const m of readFileSync(p, "utf8").matchAll(/add_executable\(\s*([\w-]+)/g)) {
          out.set(m[1], relative(repo, dir));
        }
      }
    }
  };
  walk(repo);
  return out;
})();

test("the build produces the three daemons as CMake executables", () => {
  for (const t of ["splitwise-worker", "splitwise-router", "splitwise-controller"]) {
    assert.ok(executables.has(t), `no add_executable(${t})`);
  }
});

test("there is a Dockerfile for the worker, the router and the controller", () => {
  assert.deepEqual(dockerfiles, [
    "controller.Dockerfile",
    "router.Dockerfile",
    "worker.Dockerfile",
  ]);
});

// Every problem with one Dockerfile, as sentences; [] when it is fine.
function dockerfileProblems(file, text, ignoreText) {
  const problems = [];
  const check = (ok, message) => ok || problems.push(message);
  const { stages } = stagesOf(parseDockerfile(text));
  const build = stages.find((s) => s.name === "build");
  const final = stages.at(-1);
  check(/^# syntax=docker\/dockerfile:1/.test(text), "no syntax line");
  if (!build || stages.length < 2 || final === build)
    return [...problems, "want a stage named build and a runtime stage after it"];
  const all = build.instructions
    .filter((i) => i.op === "RUN")
    .map((i) => i.args)
    .join("\n");

  // The project's own scripts, portable code, no tests.
  for (const script of ["scripts/setup.sh", "scripts/build.sh"]) {
    check(
      new RegExp(`\\./${script.replace(".", "\\.")}\\b`).test(all),
      `the build stage does not run ${script}`,
    );
  }
  for (const m of all.matchAll(/\.\/(scripts\/[\w./]+\.sh)/g)) {
    check(
      existsSync(join(repo, m[1])) && (statSync(join(repo, m[1])).mode & 0o111) !== 0,
      `${m[1]} is not an executable script`,
    );
  }
  check(
    /-DSPLITWISE_NATIVE=OFF/.test(all),
    "-march=native code would crash on other CPUs: -DSPLITWISE_NATIVE=OFF",
  );
  check(/-DBUILD_TESTING=OFF/.test(all), "tests are built: -DBUILD_TESTING=OFF");

  // Built targets and where CMake puts them.
  const buildDir = all.match(/BUILD_DIR=(\S+)/)?.[1] ?? "";
  check(buildDir.startsWith("/"), "BUILD_DIR is not an absolute path");
  const targets = [...all.matchAll(/build\.sh\s+--target\s+([^&;|\n]+)/g)].flatMap((m) =>
    m[1].trim().split(/\s+/),
  );
  check(targets.length >= 1, "build.sh builds everything: name the --target(s)");
  for (const t of targets)
    check(executables.has(t), `--target ${t} is not an executable CMake target`);
  const binaries = [];
  for (const c of final.instructions.filter((i) => i.op === "COPY" && /--from=/.test(i.args))) {
    const parts = c.args.split(/\s+/);
    const from = parts.find((p) => p.startsWith("--from=")).slice(7);
    check(
      stages.some((s) => s.name === from),
      `COPY --from=${from}: no such stage`,
    );
    const paths = parts.filter((p) => !p.startsWith("--"));
    const dest = paths.pop();
    for (const src of paths) {
      if (buildDir && src.startsWith(`${buildDir}/`)) {
        const rel = src.slice(buildDir.length + 1);
        const name = basename(rel);
        check(
          executables.get(name) === dirname(rel),
          `COPY ${src}: CMake builds ${name} in ${executables.get(name) ?? "no directory"}`,
        );
        check(targets.includes(name), `COPY ${src}: ${name} is not among the built targets`);
        binaries.push({ name, dest: dest.endsWith("/") ? dest + name : dest });
      } else {
        check(
          all.includes(src.replace(/\/$/, "")),
          `COPY ${src}: no RUN of the build stage writes it`,
        );
      }
    }
  }
  check(binaries.length >= 1, "no binary is copied out of the build");
  check(
    [...new Set(binaries.map((b) => b.name))].sort().join() === [...targets].sort().join(),
    "built targets and shipped binaries differ",
  );
  for (const b of binaries)
    check(b.dest.startsWith("/usr/local/bin/"), `${b.name} is not on PATH (/usr/local/bin)`);

  // A numeric non-root user: Kubernetes can only enforce runAsNonRoot against a uid.
  const user = final.instructions.filter((i) => i.op === "USER").at(-1)?.args ?? "";
  const m = user.match(/^(\d+)(?::(\d+))?$/);
  check(
    m && Number(m[1]) !== 0 && Number(m[2] ?? 1) !== 0,
    `USER "${user}" is not a numeric non-root uid`,
  );
  check(
    m && Number(m[1]) === 65532,
    "USER is not 65532, the uid the chart and the operator's pods run as",
  );

  const ep = final.instructions.filter((i) => i.op === "ENTRYPOINT").at(-1);
  const exe = ep ? JSON.parse(ep.args)[0] : "";
  check(
    binaries.some((b) => b.dest === exe || b.dest === `/usr/local/bin/${exe}`),
    `ENTRYPOINT ${exe || "(none)"} is not a shipped binary`,
  );

  // The runtime base runs what the build linked.
  if (file === "worker.Dockerfile") {
    check(
      /^nvidia\/cuda:13\.0\.\d+-devel-ubuntu24\.04$/.test(build.from),
      `build base ${build.from}`,
    );
    check(
      /^nvidia\/cuda:13\.0\.\d+-runtime-ubuntu24\.04$/.test(final.from),
      `runtime base ${final.from}`,
    );
    check(
      build.from.replace("-devel-", "-runtime-") === final.from,
      "build and runtime differ in CUDA release or distro",
    );
    check(/-DSPLITWISE_CUDA=ON/.test(all), "the worker image must have CUDA: -DSPLITWISE_CUDA=ON");
  } else {
    check(build.from === "debian:bookworm", `build base ${build.from} is not Debian 12`);
    check(
      /^gcr\.io\/distroless\/cc-debian12(:nonroot)?$/.test(final.from),
      `runtime base ${final.from} is not Debian 12`,
    );
  }

  const ignore = (ignoreText ?? "").split("\n");
  for (const pattern of ["/build*", "**/node_modules", "/.git"])
    check(ignore.includes(pattern), `${file}.dockerignore lacks ${pattern}`);
  return problems;
}

const images = Object.fromEntries(
  dockerfiles.map((file) => {
    const text = readText(join(imagesDir, file));
    const ignorePath = join(imagesDir, `${file}.dockerignore`);
    return [file, { text, ignore: existsSync(ignorePath) ? readText(ignorePath) : undefined }];
  }),
);

// Binaries a Dockerfile's runtime stage ships, by name.
function shipped(file) {
  const { stages } = stagesOf(parseDockerfile(images[file].text));
  return stages
    .at(-1)
    .instructions.filter((i) => i.op === "COPY" && /--from=/.test(i.args))
    .flatMap((i) =>
      i.args
        .split(/\s+/)
        .slice(0, -1)
        .filter((p) => !p.startsWith("--")),
    )
    .map((p) => basename(p.replace(/\/$/, "")));
}

describe("Dockerfiles", () => {
  for (const file of dockerfiles) {
    test(file, () =>
      assert.deepEqual(dockerfileProblems(file, images[file].text, images[file].ignore), []),
    );
  }

  // The checks see what they should: each broken copy of the worker Dockerfile fails.
  const { text, ignore } = images["worker.Dockerfile"];
  // [mutation, the problem it must produce]
  const broken = {
    "a binary path CMake does not produce": [
      (t) =>
        t.replace(
          "/build/workers/worker/splitwise-worker /usr",
          "/build/worker/splitwise-worker /usr",
        ),
      /CMake builds splitwise-worker in workers\/worker/,
    ],
    "a copied target that was not built": [
      (t) => t.replace("--target splitwise-worker splitwise-router", "--target splitwise-worker"),
      /splitwise-router is not among the built targets/,
    ],
    "a target that does not exist": [
      (t) => t.replace("--target splitwise-worker", "--target splitwise-wrker"),
      /--target splitwise-wrker is not an executable CMake target/,
    ],
    "running as root": [(t) => t.replace("USER 65532:65532", "USER root"), /USER "root"/],
    "no USER": [(t) => t.replace("USER 65532:65532", ""), /USER "" is not/],
    "not using build.sh": [
      (t) => t.replace("./scripts/build.sh", "cmake --build /build"),
      /does not run scripts\/build\.sh/,
    ],
    "a path no RUN writes": [
      (t) =>
        t.replace("COPY --from=build /opt/splitwise/lib/", "COPY --from=build /opt/other/lib/"),
      /COPY \/opt\/other\/lib\/: no RUN/,
    ],
    "a CUDA runtime of another release": [
      (t) =>
        t.replace("FROM nvidia/cuda:${CUDA_VERSION}-runtime", "FROM nvidia/cuda:12.8.0-runtime"),
      /runtime base nvidia\/cuda:12\.8\.0/,
    ],
    "native code": [(t) => t.replace("-DSPLITWISE_NATIVE=OFF", ""), /-march=native/],
    "a stage that does not exist": [
      (t) => t.replace("COPY --from=build /opt", "COPY --from=builder /opt"),
      /--from=builder: no such stage/,
    ],
  };
  for (const [name, [mutate, want]] of Object.entries(broken)) {
    test(`catches ${name}`, () => {
      const bad = mutate(text);
      assert.notEqual(bad, text, "the mutation applies");
      const problems = dockerfileProblems("worker.Dockerfile", bad, ignore);
      assert.ok(
        problems.some((p) => want.test(p)),
        `want ${want} in ${JSON.stringify(problems)}`,
      );
    });
  }
});

test("what the chart and the operator run is in the images they name", () => {
  // The chart's operator Deployment runs splitwise-controller from the controller image.
  const deploy = one(render(), "Deployment");
  const [c] = deploy.spec.template.spec.containers;
  assert.ok(shipped("controller.Dockerfile").includes(c.command[0]));
  assert.match(
    readText(join(imagesDir, "controller.Dockerfile")),
    new RegExp(`-t ${c.image.replace(/[.]/g, "\\.")}\\s`),
  );
  // The operator's pods run splitwise-worker and splitwise-router from one image.
  const builders = readText(join(repo, "controller/builders.cpp"));
  const commands = [...builders.matchAll(/\{"command",\s*Json::array\(\{"([\w-]+)"\}\)\}/g)].map(
    (m) => m[1],
  );
  assert.deepEqual(commands.sort(), ["splitwise-router", "splitwise-worker"]);
  for (const cmd of commands)
    assert.ok(shipped("worker.Dockerfile").includes(cmd), `${cmd} missing from the worker image`);
  // Its default image is the worker image the chart passes as --image.
  const defaultImage = readText(join(repo, "controller/builders.h")).match(
    /default_image = "([^"]+)"/,
  )[1];
  assert.ok(
    c.args.includes(`--image=${defaultImage}`),
    `chart --image vs builders.h ${defaultImage}`,
  );
  assert.match(
    readText(join(imagesDir, "worker.Dockerfile")),
    new RegExp(`-t ${defaultImage.replace(/[.]/g, "\\.")}\\s`),
  );
});

describe("bundle_libs.sh", () => {
  const script = join(imagesDir, "bundle_libs.sh");
  test("is valid bash", () => {
    const r = spawnSync("bash", ["-n", script], { encoding: "utf8" });
    assert.equal(r.status, 0, r.stderr);
  });

  const candidates = [
    process.env.SPLITWISE_ROUTER_BIN,
    join(repo, "build/workers/router/splitwise-router"),
  ];
  const router = candidates.find((p) => p && existsSync(p));
  test(
    "bundles a built router's libraries, leaving glibc to the base image",
    { skip: !router && "no built splitwise-router" },
    (t) => {
      const out = mkdtempSync(join(tmpdir(), "splitwise-bundle-"));
      t.after(() => rmSync(out, { recursive: true, force: true }));
      const r = spawnSync(script, [out, router], { encoding: "utf8" });
      assert.equal(r.status, 0, r.stderr);
      const libs = readdirSync(out);
      assert.ok(
        libs.some((l) => l.startsWith("libspdlog")),
        `spdlog bundled: ${libs}`,
      );
      for (const l of libs)
        assert.doesNotMatch(l, /^(libc|libm|ld-linux|libpthread|libdl|librt)[.-]/);
      // With only the bundle on the library path, every non-glibc library resolves from it.
      const ldd = spawnSync("ldd", [router], {
        encoding: "utf8",
        env: { LD_LIBRARY_PATH: out, PATH: process.env.PATH },
      });
      for (const line of ldd.stdout.split("\n")) {
        const m = line.trim().match(/^(\S+) => (\S+)/);
        if (m && libs.includes(m[1])) assert.equal(dirname(m[2]), out, line);
      }
      const help = spawnSync(router, ["--help"], {
        encoding: "utf8",
        env: { LD_LIBRARY_PATH: out },
      });
      assert.equal(help.status, 0, help.stderr);
    },
  );

  test("refuses a missing binary", () => {
    const out = mkdtempSync(join(tmpdir(), "splitwise-bundle-"));
    const r = spawnSync(script, [out, join(out, "nope")], { encoding: "utf8" });
    rmSync(out, { recursive: true, force: true });
    assert.notEqual(r.status, 0);
  });
});
