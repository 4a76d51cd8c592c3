// Starts the built edge worker in workerd through Miniflare's API, for tests/worker and the
// benchmark. Usage: node driver.mjs <options.json>; writes {"url": ...} to options.ready once
// workerd listens, and shuts workerd down when stdin closes (or on SIGTERM).
//
// options: {
//   "scriptPath": ".../index.js", "modulesRoot": "...", "compatibilityDate": "...",
//   "bindings": {NAME: string | object},       // vars and secrets, as wrangler passes them
//   "originService": "127.0.0.1:PORT" | null,   // bind ORIGIN as a service (an external server)
//   "cachePersist": "dir" | null,              // Cache API storage, shared between runs
//   "ready": "path", "port": 0, "workers": [...] // optional extra workers (benchmark)
// }
import { readFileSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import { fileURLToPath, pathToFileURL } from "node:url";

// miniflare as pinned in tools/package-lock.json (ESM ignores NODE_PATH, so resolve it there).
const tools = fileURLToPath(new URL("../../tools/package.json", import.meta.url));
const { Miniflare, Log, LogLevel } = await import(pathToFileURL(createRequire(tools).resolve("miniflare")).href);

const options = JSON.parse(readFileSync(process.argv[2], "utf8"));

function workerOptions(o) {
  const w = {
    name: o.name ?? "authgate-edge",
    scriptPath: o.scriptPath,
    modules: true,
    modulesRoot: o.modulesRoot,
    modulesRules: [{ type: "CompiledWasm", include: ["**/*.wasm"], fallthrough: true }],
    compatibilityDate: o.compatibilityDate,
    bindings: o.bindings ?? {},
  };
  if (o.originService) {
    w.serviceBindings = { ORIGIN: { external: { address: o.originService, http: {} } } };
  }
  if (o.routes) w.routes = o.routes;
  return w;
}

const workers = [workerOptions(options), ...(options.workers ?? []).map(workerOptions)];
const mf = new Miniflare({
  host: "127.0.0.1",
  port: options.port ?? 0,
  cf: false,
  log: new Log(LogLevel.INFO),
  cachePersist: options.cachePersist ?? false,
  // /cdn-cgi/handler/scheduled fires the cron trigger (tests only).
  unsafeTriggerHandlers: true,
  workers,
});

const url = await mf.ready;
writeFileSync(options.ready, JSON.stringify({ url: url.href }));

let stopping = false;
async function stop() {
  if (stopping) return;
  stopping = true;
  await mf.dispose();
  process.exit(0);
}
process.stdin.on("end", stop);
process.stdin.on("close", stop);
process.stdin.resume();
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
