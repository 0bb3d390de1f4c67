// Sum: runtime error -- an uncaught TypeError (reads past the end of the input).
'use strict';
const tokens = require('fs').readFileSync(0, 'latin1').split(/\s+/).filter(Boolean);
const n = Number(tokens[0]);
let sum = 0n;
for (let i = 1; i <= n + 1; i++) sum += BigInt(tokens[i].trim()); // tokens[n + 1] is undefined
process.stdout.write(`${sum}\n`);
