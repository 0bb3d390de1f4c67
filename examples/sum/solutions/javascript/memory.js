// Sum: memory limit -- allocates and touches 640 MiB (outside the JS heap,
// so --max-old-space-size does not stop it) before answering.
'use strict';
const ballast = Buffer.alloc(640 << 20, 1); // filled with 1: every page written
const tokens = require('fs').readFileSync(0, 'latin1').split(/\s+/).filter(Boolean);
const n = Number(tokens[0]);
let sum = 0;
for (let i = 1; i <= n; i++) sum += Number(tokens[i]);
process.stdout.write(`${sum + ballast[ballast.length - 1] - 1}\n`);
