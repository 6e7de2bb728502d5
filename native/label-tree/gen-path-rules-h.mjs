#!/usr/bin/env node
// Writes path-rules.h, the path rules of src/core/path-rules.json as C: the tool compiles in the very
// lists and reasons the TypeScript rules read. Run by the Makefile whenever the JSON changes.
//   node gen-path-rules-h.mjs SPEC.json OUT.h
import { readFileSync, writeFileSync } from 'node:fs';

const [specPath, outPath] = process.argv.slice(2);
if (!specPath || !outPath) throw new Error('usage: gen-path-rules-h.mjs SPEC.json OUT.h');
const spec = JSON.parse(readFileSync(specPath, 'utf8'));

/** A C string literal: printable ASCII as is, every other byte (UTF-8 included) as an octal escape. */
function cString(text) {
  let out = '"';
  for (const byte of Buffer.from(text, 'utf8')) {
    const ch = String.fromCharCode(byte);
    if (ch === '"' || ch === '\\') out += `\\${ch}`;
    else if (byte >= 0x20 && byte < 0x7f) out += ch;
    else out += `\\${byte.toString(8).padStart(3, '0')}`;
  }
  return `${out}"`;
}

// The placeholders each reason the tool prints must have, in this order: the C code passes its arguments
// so. A reason reworded with other placeholders fails the build instead of printing garbage.
const FORMATS = {
  empty: [], controlCharacters: [], notAbsolute: [], dotSegments: [], notNormal: ['normal'], systemDir: ['path'],
  systemTree: ['tree', 'hint'], notOwner: ['owner', 'requester'], poolNotShared: ['pool'], nameControlCharacters: [],
};
const NUMERIC = new Set(['owner', 'requester']);

/** A reason as a printf format: {uid}s as %lu, other placeholders as %s, a literal % doubled. */
function format(name) {
  const template = spec.reasons[name];
  if (typeof template !== 'string') throw new Error(`path-rules.json: no reason "${name}"`);
  const found = [...template.matchAll(/\{(\w+)\}/g)].map((m) => m[1]);
  if (found.join() !== FORMATS[name].join()) {
    throw new Error(`path-rules.json: reason "${name}" has placeholders {${found.join('}, {')}}; the tool passes {${FORMATS[name].join('}, {')}}`);
  }
  return template.replace(/%/g, '%%').replace(/\{(\w+)\}/g, (_, p) => (NUMERIC.has(p) ? '%lu' : '%s'));
}

const constName = (camel) => camel.replace(/[A-Z]/g, (c) => `_${c}`).toUpperCase();
const list = (items) => `{\n${items.map((item) => `  ${item},`).join('\n')}\n}`;
const ranges = spec.controlCharacters.map(([lo, hi]) => {
  if (!(Number.isInteger(lo) && Number.isInteger(hi) && lo >= 0 && lo <= hi && hi < 256)) throw new Error(`path-rules.json: bad range ${lo}-${hi}`);
  if (lo === hi) return `c == ${lo}`;
  return lo === 0 ? `c <= ${hi}` : `(c >= ${lo} && c <= ${hi})`;
});
const kinds = ['symlink', 'char', 'block', 'fifo', 'socket', 'other'];

const header = `/* Generated from src/core/path-rules.json by gen-path-rules-h.mjs at build time: edit the JSON. */
#ifndef SVIRT_PATH_RULES_H
#define SVIRT_PATH_RULES_H
#include <stdbool.h>
#include <stddef.h>

/* Anything under these is the host's; a pool the requester may use lifts the rule below it. */
static const char *const RULES_SYSTEM_TREES[] = ${list(spec.systemTrees.map(cString))};
/* What a refusal adds for each system tree ("" for none). */
static const char *const RULES_SYSTEM_TREE_HINTS[] = ${list(spec.systemTrees.map((t) => cString(spec.systemTreeHints[t] ?? '')))};
#define RULES_N_SYSTEM_TREES ${spec.systemTrees.length}
/* These directories themselves are refused, even in a pool; what lies inside them is fine. */
static const char *const RULES_SYSTEM_DIRS[] = ${list(spec.systemDirs.map(cString))};
#define RULES_N_SYSTEM_DIRS ${spec.systemDirs.length}

/* A byte no path or file name may hold. */
static inline bool rules_control_char(unsigned char c) {
  return ${ranges.join(' || ')};
}

/* Refusal reasons, as printf formats. */
${Object.keys(FORMATS).map((name) => `#define REASON_${constName(name)} ${cString(format(name))}`).join('\n')}

/* Why a file of a kind may not be a relabel's root. */
${kinds.map((kind) => `#define KIND_${kind.toUpperCase()} ${cString(spec.kinds[kind].replace(/%/g, '%%'))}`).join('\n')}

#endif
`;
writeFileSync(outPath, header);
