#!/usr/bin/env node
// Compile contracts/src with the pinned solc-js and write deterministic artifacts.
//
//   node contracts/build.mjs           write agent/chain/artifacts/*.json (+ test/ for fixtures)
//   node contracts/build.mjs --check   compile in memory; exit 1 listing files that differ
//
// Contracts under src/test/ are test fixtures: their artifacts go to agent/chain/artifacts/test/,
// which the Python package data (chain/artifacts/*.json) does not ship.
// Output depends only on the sources, the pinned packages and the settings below: source unit names
// are relative to contracts/, metadata carries no hash, and JSON is written with sorted keys, two-space
// indentation and a trailing newline. Exit codes: 0 ok, 1 compile error or check mismatch, 2 usage.

import { createHash } from "node:crypto";
import { existsSync, mkdirSync, readdirSync, readFileSync, unlinkSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import path from "node:path";
import { fileURLToPath } from "node:url";

const CONTRACTS_DIR = path.dirname(fileURLToPath(import.meta.url));
const REPO_DIR = path.dirname(CONTRACTS_DIR);
const SRC_DIR = path.join(CONTRACTS_DIR, "src");
const ARTIFACTS_DIR = path.join(REPO_DIR, "agent", "chain", "artifacts");
const FIXTURE_SUBDIR = "test"; // src/test/*.sol -> artifacts/test/*.json
const OZ = "@openzeppelin/contracts";

const SETTINGS = {
  evmVersion: "cancun",
  metadata: { bytecodeHash: "none" },
  optimizer: { enabled: true, runs: 200 },
  remappings: ["@openzeppelin/=node_modules/@openzeppelin/"],
  viaIR: false,
};

const OUTPUT_SELECTION = {
  "*": {
    "*": ["abi", "evm.bytecode.object", "evm.deployedBytecode.object", "evm.deployedBytecode.immutableReferences"],
  },
};

const require = createRequire(import.meta.url);

function usage(message) {
  console.error(`build.mjs: ${message}\nusage: node contracts/build.mjs [--check]`);
  process.exit(2);
}

function fail(lines) {
  for (const line of lines) console.error(line);
  process.exit(1);
}

function sha256(text) {
  return createHash("sha256").update(text).digest("hex");
}

/** JSON with recursively sorted object keys, two-space indentation and a trailing newline. */
function stableJson(value) {
  const sortKeys = (v) => {
    if (Array.isArray(v)) return v.map(sortKeys);
    if (v !== null && typeof v === "object") {
      return Object.fromEntries(
        Object.keys(v)
          .sort()
          .map((k) => [k, sortKeys(v[k])]),
      );
    }
    return v;
  };
  return `${JSON.stringify(sortKeys(value), null, 2)}\n`;
}

/** Comparator for Object.entries(): by key, in code-unit order. */
function byName([a], [b]) {
  return a < b ? -1 : a > b ? 1 : 0;
}

function toPosix(p) {
  return p.split(path.sep).join("/");
}

/** Loaded solc, after checking the installed packages are the versions pinned in package.json. */
function loadPinnedPackages() {
  const pkg = JSON.parse(readFileSync(path.join(CONTRACTS_DIR, "package.json"), "utf8"));
  let solc;
  let ozVersion;
  try {
    solc = require("solc");
    ozVersion = JSON.parse(
      readFileSync(path.join(CONTRACTS_DIR, "node_modules", OZ, "package.json"), "utf8"),
    ).version;
  } catch (error) {
    fail([`build.mjs: npm packages missing (${error.message}); run: cd contracts && npm ci`]);
  }
  const problems = [];
  const solcVersion = solc.version(); // e.g. 0.8.37+commit.f401782d.Emscripten.clang
  if (!solcVersion.startsWith(`${pkg.dependencies.solc}+`)) {
    problems.push(`solc ${solcVersion} installed, package.json pins ${pkg.dependencies.solc}`);
  }
  if (ozVersion !== pkg.dependencies[OZ]) {
    problems.push(`${OZ} ${ozVersion} installed, package.json pins ${pkg.dependencies[OZ]}`);
  }
  if (problems.length) fail([...problems.map((p) => `build.mjs: ${p}`), "run: cd contracts && npm ci"]);
  return { solc, solcVersion: solcVersion.split(".Emscripten")[0], ozVersion };
}

/** Source unit names ("src/X.sol", sorted) -> file contents. */
function readSources() {
  const sources = {};
  const walk = (dir) => {
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) walk(full);
      else if (entry.name.endsWith(".sol")) sources[toPosix(path.relative(CONTRACTS_DIR, full))] = full;
    }
  };
  walk(SRC_DIR);
  return Object.fromEntries(
    Object.keys(sources)
      .sort()
      .map((name) => [name, readFileSync(sources[name], "utf8")]),
  );
}

/** Line and column (1-based) of a character offset. */
function lineCol(text, offset) {
  const before = text.slice(0, Math.max(0, offset));
  const lines = before.split("\n");
  return `${lines.length}:${lines[lines.length - 1].length + 1}`;
}

function compile(solc, sources) {
  const loaded = { ...sources };
  const findImports = (unitName) => {
    const full = path.resolve(CONTRACTS_DIR, unitName);
    if (!full.startsWith(CONTRACTS_DIR + path.sep)) return { error: `import outside contracts/: ${unitName}` };
    if (!existsSync(full)) return { error: `file not found: ${unitName}` };
    loaded[unitName] = readFileSync(full, "utf8");
    return { contents: loaded[unitName] };
  };
  const input = {
    language: "Solidity",
    sources: Object.fromEntries(Object.entries(sources).map(([name, content]) => [name, { content }])),
    settings: { ...SETTINGS, outputSelection: OUTPUT_SELECTION },
  };
  const output = JSON.parse(solc.compile(JSON.stringify(input), { import: findImports }));

  const errors = [];
  for (const diagnostic of output.errors ?? []) {
    const where = diagnostic.sourceLocation
      ? `contracts/${diagnostic.sourceLocation.file}:${lineCol(
          loaded[diagnostic.sourceLocation.file] ?? "",
          diagnostic.sourceLocation.start,
        )}`
      : "contracts";
    const line = `${where}: ${diagnostic.type}: ${diagnostic.message}`;
    if (diagnostic.severity === "error") errors.push(line);
    else console.error(`warning: ${line}`);
  }
  if (errors.length) fail([...errors, `build.mjs: ${errors.length} compiler error(s)`]);
  return output;
}

/**
 * Byte ranges of the runtime code that the constructor fills with `immutable` values, as
 * [{start, length}] sorted by start. solc keys them by AST id, which changes whenever any source is
 * edited; the ranges alone are what a deployed-code check needs (mask them, compare the rest).
 */
function immutableRanges(references) {
  return Object.values(references ?? {})
    .flat()
    .map(({ start, length }) => ({ length, start }))
    .sort((a, b) => a.start - b.start);
}

/** Relative path under agent/chain/artifacts/ -> file text, for every deployable contract in src/. */
function renderArtifacts(output, sources, solcVersion, ozVersion) {
  const files = {};
  const owner = {};
  for (const sourceName of Object.keys(sources)) {
    const isFixture = sourceName.startsWith(`src/${FIXTURE_SUBDIR}/`);
    for (const [contractName, contract] of Object.entries(output.contracts?.[sourceName] ?? {}).sort(byName)) {
      if (!contract.evm.bytecode.object) continue; // interfaces and abstract contracts
      if (owner[contractName]) {
        fail([`build.mjs: contract ${contractName} defined in both ${owner[contractName]} and ${sourceName}`]);
      }
      owner[contractName] = sourceName;
      const relative = isFixture ? `${FIXTURE_SUBDIR}/${contractName}.json` : `${contractName}.json`;
      files[relative] = stableJson({
        abi: contract.abi,
        bytecode: `0x${contract.evm.bytecode.object}`,
        compiler: { name: "solc", version: solcVersion },
        contractName,
        deployedBytecode: `0x${contract.evm.deployedBytecode.object}`,
        immutableReferences: immutableRanges(contract.evm.deployedBytecode.immutableReferences),
        sourcePath: `contracts/${sourceName}`,
      });
    }
  }
  files["manifest.json"] = stableJson({
    artifacts: Object.keys(files).sort(),
    compiler: { name: "solc", version: solcVersion },
    dependencies: { [OZ]: ozVersion },
    settings: SETTINGS,
    sources: Object.fromEntries(
      Object.entries(sources).map(([name, content]) => [`contracts/${name}`, sha256(content)]),
    ),
  });
  return files;
}

/** Relative paths of the *.json files currently in the artifact folders. */
function existingArtifacts() {
  const found = [];
  for (const sub of ["", FIXTURE_SUBDIR]) {
    const dir = path.join(ARTIFACTS_DIR, sub);
    if (!existsSync(dir)) continue;
    for (const entry of readdirSync(dir, { withFileTypes: true })) {
      if (entry.isFile() && entry.name.endsWith(".json")) found.push(sub ? `${sub}/${entry.name}` : entry.name);
    }
  }
  return found.sort();
}

function main() {
  const args = process.argv.slice(2);
  const unknown = args.filter((a) => a !== "--check");
  if (unknown.length) usage(`unknown argument(s): ${unknown.join(" ")}`);
  const check = args.includes("--check");

  const { solc, solcVersion, ozVersion } = loadPinnedPackages();
  const sources = readSources();
  const output = compile(solc, sources);
  const files = renderArtifacts(output, sources, solcVersion, ozVersion);
  const display = (rel) => toPosix(path.relative(REPO_DIR, path.join(ARTIFACTS_DIR, rel)));
  const stale = existingArtifacts().filter((rel) => !(rel in files));

  if (check) {
    const problems = [];
    for (const [rel, text] of Object.entries(files).sort(byName)) {
      const full = path.join(ARTIFACTS_DIR, rel);
      if (!existsSync(full)) problems.push(`  missing:    ${display(rel)}`);
      else if (readFileSync(full, "utf8") !== text) problems.push(`  differs:    ${display(rel)}`);
    }
    for (const rel of stale) problems.push(`  unexpected: ${display(rel)}`);
    if (problems.length) {
      fail([
        "contract artifacts are out of date with contracts/src:",
        ...problems,
        "run `make contracts` (or: node contracts/build.mjs) and commit agent/chain/artifacts/",
      ]);
    }
    console.log(`artifacts up to date (${Object.keys(files).length} files, solc ${solcVersion}, ${SETTINGS.evmVersion})`);
    return;
  }

  mkdirSync(path.join(ARTIFACTS_DIR, FIXTURE_SUBDIR), { recursive: true });
  for (const [rel, text] of Object.entries(files).sort(byName)) {
    writeFileSync(path.join(ARTIFACTS_DIR, rel), text);
  }
  for (const rel of stale) unlinkSync(path.join(ARTIFACTS_DIR, rel));
  console.log(
    `wrote ${Object.keys(files).length} files to ${display("")} (solc ${solcVersion}, ${SETTINGS.evmVersion})` +
      (stale.length ? `; removed stale: ${stale.join(", ")}` : ""),
  );
}

main();
