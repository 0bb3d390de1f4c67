// Sum: accepted. Parses the raw bytes: splitting a 20 MB string is slow.
// Every partial sum is below 2^53 in magnitude, so Number arithmetic is exact.
'use strict';
const data = require('fs').readFileSync(0);

let pos = 0;
function next() {
  while (pos < data.length && (data[pos] < 48 || data[pos] > 57) && data[pos] !== 45) pos++;
  let negative = false;
  if (data[pos] === 45) {
    negative = true;
    pos++;
  }
  let value = 0;
  while (pos < data.length && data[pos] >= 48 && data[pos] <= 57) {
    value = value * 10 + (data[pos] - 48);
    pos++;
  }
  return negative ? -value : value;
}

const n = next();
let sum = 0;
for (let i = 0; i < n; i++) sum += next();
process.stdout.write(`${sum}\n`);
