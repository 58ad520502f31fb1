// Assemble a WebAssembly text file (web/kernels/*.wat) to its binary with wabt (a pinned npm dev
// dependency), SIMD enabled. build.py runs it when the source changes and caches the result.
//   node scripts/assemble_kernels.mjs SOURCE.wat OUTPUT.wasm
import fs from "node:fs";
import path from "node:path";
import wabtInit from "wabt";

const [source, output] = process.argv.slice(2);
const wabt = await wabtInit();
const module = wabt.parseWat(path.basename(source), fs.readFileSync(source, "utf8"), { simd: true });
try {
  module.validate();
  fs.writeFileSync(output, Buffer.from(module.toBinary({}).buffer));
} finally {
  module.destroy();
}
