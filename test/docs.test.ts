/**
 * The README's error table and option tables match the code. Names are read from the compiled
 * declarations (dist/node, what users get), following re-exports and `extends` from the public entries, so
 * an option or error code added without a README row fails here, and so does a row for a name that is gone.
 * Members tagged `@internal` are not public and need no row.
 */

import assert from "node:assert/strict";
import { existsSync, readFileSync } from "node:fs";
import { dirname, join, resolve } from "node:path";
import { test } from "node:test";

const root = resolve(import.meta.dirname, "..");
const dist = join(root, "dist", "node");
const readme = readFileSync(join(root, "README.md"), "utf8");

function read(file: string): string {
  assert.ok(existsSync(file), `${file} is missing: run \`npm run build\` first (npm test does)`);
  return readFileSync(file, "utf8");
}

/** `./x.js` imported from `from` -> the .d.ts beside it. */
function declarationOf(from: string, specifier: string): string {
  return resolve(dirname(from), specifier.replace(/\.js$/, ".d.ts"));
}

/** The text between the braces that open at `open` (an index of "{"), exclusive. */
function braced(text: string, open: number): string {
  let depth = 0;
  for (let i = open; i < text.length; i++) {
    if (text[i] === "{") depth++;
    else if (text[i] === "}" && --depth === 0) return text.slice(open + 1, i);
  }
  throw new Error("unbalanced braces");
}

interface Declaration {
  file: string;
  text: string; // the declaration file's text
  heritage: string[]; // names after `extends`
  body: string; // the text between its braces
}

/** Finds the interface `name` as `file` sees it: declared there, imported, or re-exported. */
function findInterface(file: string, name: string, seen = new Set<string>()): Declaration | undefined {
  const key = `${file}#${name}`;
  if (seen.has(key)) return undefined;
  seen.add(key);
  const text = read(file);
  const declared = new RegExp(`(?:^|\\n)(?:export )?(?:declare )?interface ${name}\\b([^{]*)\\{`).exec(text);
  if (declared) {
    const heritage = /extends\s+(.*)/s.exec(declared[1]!)?.[1] ?? "";
    return {
      file,
      text,
      heritage: heritage.split(",").map((part) => part.replace(/<.*$/s, "").trim()).filter(Boolean),
      body: braced(text, declared.index + declared[0].length - 1),
    };
  }
  // `import/export (type) { a, b as c } from "./x.js"`: follow the one that names it.
  for (const match of text.matchAll(/(?:import|export)\s+(?:type\s+)?\{([^}]*)\}\s*from\s*"([^"]+)"/g)) {
    for (const part of match[1]!.split(",")) {
      const [original, alias = original] = part.replace(/^\s*type\s+/, "").split(/\s+as\s+/).map((s) => s.trim());
      if (alias === name && match[2]!.startsWith(".")) {
        const found = findInterface(declarationOf(file, match[2]!), original!, seen);
        if (found) return found;
      }
    }
  }
  for (const match of text.matchAll(/export\s+\*\s+from\s*"([^"]+)"/g)) {
    const found = findInterface(declarationOf(file, match[1]!), name, seen);
    if (found) return found;
  }
  return undefined;
}

/** The public member names of an interface, inherited ones included. */
function members(entry: string, name: string): string[] {
  const found = findInterface(join(dist, entry), name);
  assert.ok(found, `${name} is not reachable from ${entry}`);
  // Comments out (a member's TSDoc leaves a mark when it says @internal), then only what sits at the
  // body's top level: nested brackets (inline object types, parameters) blanked out.
  const body = found.body
    .replace(/\/\*[\s\S]*?\*\//g, (comment) => (comment.includes("@internal") ? " @internal " : " "))
    .replace(/\/\/.*$/gm, "");
  let top = "";
  let depth = 0;
  for (const c of body) {
    if ("{([".includes(c)) depth++;
    else if ("})]".includes(c)) depth--;
    else if (depth === 0) top += c;
  }
  const names: string[] = [];
  for (const statement of top.split(";")) {
    const match = /^\s*(@internal\s+)?(?:readonly\s+)?([A-Za-z_$][\w$]*)\??\s*[:<]?/.exec(statement);
    if (!match || match[1] || statement.trim() === "") continue;
    names.push(match[2]!);
  }
  for (const base of found.heritage) names.push(...members(relativeToDist(found.file), base));
  return names;
}

function relativeToDist(file: string): string {
  return file.slice(dist.length + 1);
}

/** The names in the first column of the first table after the heading that contains `heading` (title row aside). */
function tableNames(heading: string): string[] {
  const lines = readme.split("\n");
  const start = lines.findIndex((line) => /^#{2,4} /.test(line) && line.includes(heading));
  assert.ok(start >= 0, `README has a heading with ${heading}`);
  const names: string[] = [];
  let inTable = false;
  for (const line of lines.slice(start + 1)) {
    if (/^#{1,4} /.test(line)) break;
    if (line.startsWith("|")) {
      const header = !inTable;
      inTable = true;
      if (header) continue; // the column titles
      const first = line.split("|")[1] ?? "";
      for (const match of first.matchAll(/`([A-Za-z_$][\w$]*)/g)) names.push(match[1]!);
    } else if (inTable) break;
  }
  assert.ok(names.length > 0, `README has a table under "${heading}"`);
  return names;
}

function assertSameNames(what: string, inCode: string[], inReadme: string[]): void {
  const undocumented = inCode.filter((name) => !inReadme.includes(name));
  const stale = inReadme.filter((name) => !inCode.includes(name));
  assert.deepEqual(undocumented, [], `${what}: in the code but not in the README's table: ${undocumented.join(", ")}`);
  assert.deepEqual(stale, [], `${what}: in the README's table but not in the code: ${stale.join(", ")}`);
}

test("every error code the code exports is in the README's error table, and only those", () => {
  const errors = read(join(dist, "src", "errors.d.ts"));
  const union = /export type ErrorCode =([^;]*);/.exec(errors);
  assert.ok(union, "errors.d.ts declares ErrorCode");
  const codes = [...union[1]!.matchAll(/"([A-Z_]+)"/g)].map((match) => match[1]!);
  assert.ok(codes.length >= 10, `ErrorCode has its codes (${codes.length})`);
  const table = tableNames("Errors").filter((name) => name.startsWith("ERR_"));
  assertSameNames("error codes", codes, table);
  // And each error class a user can catch is named in the table.
  for (const match of errors.matchAll(/export declare class (\w+Error) extends WslisError/g)) {
    assert.match(readme, new RegExp(`\\| \`${match[1]}\``), `${match[1]} is in the README's error table`);
  }
});

/** Each option bag a user passes, the entry that exports it, and the README heading over its table. */
const optionTables = [
  { name: "DialOptions", entry: "src/index.d.ts", heading: "`dialAndListen(url, options?)" },
  { name: "ReconnectOptions", entry: "src/index.d.ts", heading: "`ReconnectOptions`" },
  { name: "SessionOptions", entry: "src/index.d.ts", heading: "`SessionOptions`" },
  { name: "ServeHttpOptions", entry: "src/index.d.ts", heading: "`ServeHttpOptions`" },
  { name: "ServerOptions", entry: "server-node/index.d.ts", heading: "`ServerOptions`" },
  { name: "DeviceHttpOptions", entry: "server-node/index.d.ts", heading: "`DeviceHttpOptions`" },
];

for (const { name, entry, heading } of optionTables) {
  test(`every ${name} member has a row in the README's ${name} table, and every row a member`, () => {
    const inCode = members(entry, name);
    assert.ok(inCode.length > 0, `${name} has members`);
    assertSameNames(name, inCode, tableNames(heading));
  });
}
