// Sum: wrong answer -- a 32-bit accumulator (`| 0`) overflows past 2^31 - 1.
'use strict';
const tokens = require('fs').readFileSync(0, 'latin1').split(/\s+/).filter(Boolean);
const n = Number(tokens[0]);
let sum = 0;
for (let i = 1; i <= n; i++) sum = (sum + Number(tokens[i])) | 0;
process.stdout.write(`${sum}\n`);
