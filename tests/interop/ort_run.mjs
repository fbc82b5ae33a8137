// Runs an ONNX model in ONNX Runtime (CPU, one thread) on inputs given as raw little-endian files,
// and writes every output the same way. The oracle for shrink's ONNX writer and quantizer: a file is
// right when ONNX Runtime loads and runs it.
//
//   node ort_run.mjs MODEL.onnx MANIFEST.json OUT_DIR [--no-optimize]
//
// MANIFEST.json: {"inputs": [{"name": "x", "type": "float32", "dims": [1, 1, 28, 28], "file": "x.bin"}, ...]}
//   ("file" relative to the manifest's folder; types: float32, int64, int32, uint8, int8, bool).
// OUT_DIR/outputs.json: [{"name", "type", "dims", "file"}] with OUT_DIR/<index>.bin holding each output.
// Also prints the model's input and output names with --describe instead of a manifest.
// --no-optimize runs the graph as written: ORT's optimizer would otherwise fuse DequantizeLinear(int4, blocked)
// + MatMul into MatMulNBits with int8-quantized activations (accuracy level 4), changing the arithmetic.
import fs from "node:fs";
import path from "node:path";
import ort from "onnxruntime-node";

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

const arrays = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array,
  bool: Uint8Array, float64: Float64Array,
};

const [modelPath, manifestPath, outDir, flag] = process.argv.slice(2);
if (!modelPath || !manifestPath) fail("usage: node ort_run.mjs MODEL.onnx MANIFEST.json OUT_DIR | --describe");

let session;
try {
  session = await ort.InferenceSession.create(modelPath, {
    executionProviders: ["cpu"],
    intraOpNumThreads: 1,
    interOpNumThreads: 1,
    logSeverityLevel: 3,
    graphOptimizationLevel: flag === "--no-optimize" ? "disabled" : "all",
  });
} catch (e) {
  fail(`ONNX Runtime cannot load ${modelPath}: ${e.message}`);
}

if (manifestPath === "--describe") {
  process.stdout.write(JSON.stringify({inputs: session.inputNames, outputs: session.outputNames}) + "\n");
  process.exit(0);
}

const manifest = JSON.parse(fs.readFileSync(manifestPath, "utf8"));
const base = path.dirname(manifestPath);
const feeds = {};
for (const inp of manifest.inputs) {
  const Arr = arrays[inp.type];
  if (!Arr) fail(`input ${inp.name}: unsupported type ${inp.type}`);
  const bytes = fs.readFileSync(path.join(base, inp.file));
  const copy = new Uint8Array(bytes.length);
  copy.set(bytes);
  const data = new Arr(copy.buffer, 0, bytes.length / Arr.BYTES_PER_ELEMENT);
  const want = inp.dims.reduce((a, b) => a * b, 1);
  if (data.length !== want) fail(`input ${inp.name}: file holds ${data.length} values, dims call for ${want}`);
  feeds[inp.name] = new ort.Tensor(inp.type, data, inp.dims);
}

let results;
try {
  results = await session.run(feeds);
} catch (e) {
  fail(`ONNX Runtime cannot run ${modelPath}: ${e.message}`);
}

fs.mkdirSync(outDir, {recursive: true});
const described = [];
session.outputNames.forEach((name, i) => {
  const t = results[name];
  const file = `${i}.bin`;
  const d = t.data;
  fs.writeFileSync(path.join(outDir, file), Buffer.from(d.buffer, d.byteOffset, d.byteLength));
  described.push({name, type: t.type, dims: t.dims, file});
});
fs.writeFileSync(path.join(outDir, "outputs.json"), JSON.stringify(described));
