// Sum: time limit -- correct, but recomputes every prefix sum: O(N^2).
'use strict';
const tokens = require('fs').readFileSync(0, 'latin1').split(/\s+/).filter(Boolean);
const n = Number(tokens[0]);
const a = new Float64Array(n);
for (let i = 0; i < n; i++) a[i] = Number(tokens[i + 1]);
let prefix = 0;
for (let i = 0; i < n; i++) {
  let p = 0;
  for (let j = 0; j <= i; j++) p += a[j];
  prefix = p;
}
process.stdout.write(`${prefix}\n`);
