// Runs the conformance vectors through the package in whatever runtime executes it (Node, Deno,
// Bun) and prints one JSON line per case: the decision's status, code and identity headers.
// runtimes.test.mjs compares the lines of every runtime with Node's and with the vectors.
//
//   <runtime> decide-vectors.mjs <package dir> <vectors.json> <webcrypto|wasm>

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { pathToFileURL } from "node:url";

const argv = globalThis.Deno ? Deno.args : process.argv.slice(2);
const [pkg, vectorsFile, signatures] = argv;
const { Gateway } = await import(pathToFileURL(join(pkg, "index.js")).href);
const v = JSON.parse(await readFile(vectorsFile, "utf8"));

// The vectors are minted for `now`; the package reads the clock through Date.now().
Date.now = () => v.now * 1000;
const fetch = async (url) => (url === v.config.revocations.uri ? new Response(v.feed) : new Response("", { status: 404 }));
const gate = await Gateway.create(v.config, { fetch, signatures, log: () => {} });
await gate.ready(5_000);
const lines = [];
for (const c of v.cases) {
  const d = await gate.decide({ method: c.request.method, path: c.request.path, headers: [...c.request.headers, ["x-request-id", "rt"]] });
  const identity = d.allow ? Object.fromEntries(d.setHeaders.filter(([n]) => n.startsWith("x-auth-"))) : null;
  lines.push(JSON.stringify({ name: c.name, status: d.status, code: d.allow ? null : d.code, identity }));
}
lines.push(JSON.stringify({ runtimeChecks: gate.status().signaturesCheckedByRuntime }));
gate.close();
console.log(lines.join("\n"));
