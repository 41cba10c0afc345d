// Builds the browser examples next to the built package (target/wasm-package
// by default), so the hub serving that directory (--client-dir) serves them:
// chat.html as it is, and the React and Vue examples bundled by esbuild,
// which resolves @sacred/client to the built package like any npm package.
//
//   scripts/wasm-package.sh && node examples/browser/build.mjs [DIR]
//
// The bundles sit beside sacred_client_wasm_bg.wasm: the package finds its
// WebAssembly next to the script that loaded it (`new URL(..., import.meta.url)`,
// which Vite and webpack rewrite themselves; with esbuild keep the .wasm beside
// the bundle or call `load(url)` first).

import { copyFile } from "node:fs/promises";
import { createRequire } from "node:module";
import { join, resolve } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const here = fileURLToPath(new URL(".", import.meta.url));
const root = resolve(here, "../..");
const tools = createRequire(join(root, "bindings/wasm/tools/package.json"));
const esbuild = await import(pathToFileURL(tools.resolve("esbuild")).href);

/** Writes chat.html, example-react.{html,js} and example-vue.{html,js} into `dir`. */
export async function build(dir = join(root, "target/wasm-package")) {
  await copyFile(join(here, "chat.html"), join(dir, "chat.html"));
  for (const [name, entry] of [["react", "main.jsx"], ["vue", "main.js"]]) {
    await esbuild.build({
      entryPoints: [join(here, name, entry)],
      outfile: join(dir, `example-${name}.js`),
      bundle: true,
      format: "esm",
      jsx: "automatic",
      logLevel: "warning",
      // The built package, as a bundler finds it in node_modules.
      alias: { "@sacred/client": dir },
      // React, Vue and their dependencies come from the tools' node_modules.
      nodePaths: [join(root, "bindings/wasm/tools/node_modules")],
      define: {
        // Development builds: React's StrictMode then really mounts twice,
        // and both frameworks explain their warnings.
        "process.env.NODE_ENV": '"development"',
        __VUE_OPTIONS_API__: "true",
        __VUE_PROD_DEVTOOLS__: "false",
        __VUE_PROD_HYDRATION_MISMATCH_DETAILS__: "false",
      },
    });
    await copyFile(join(here, name, "index.html"), join(dir, `example-${name}.html`));
  }
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = resolve(process.argv[2] ?? join(root, "target/wasm-package"));
  await build(dir);
  console.log(`examples built into ${dir}: chat.html, example-react.html, example-vue.html`);
}
