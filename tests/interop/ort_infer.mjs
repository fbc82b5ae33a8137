// Runs an ONNX model in ONNX Runtime (CPU) on raw little-endian tensors and writes the outputs the same way.
//   node ort_infer.mjs <model.onnx> <job.json>
// job.json: {"samples": [[{"name", "type", "dims", "file"}, ...], ...], "out_dir": "...", "repeat": 1, "threads": 1}
//   type is an onnxruntime tensor type ("float32", "int64", "bool", "uint8", "int8", "int32").
// Writes out_dir/<sample>_<output index>.bin and out_dir/outputs.json:
//   {"samples": [[{"name", "type", "dims", "file"}, ...]], "ms_per_run": <mean wall time of session.run>}
import fs from 'node:fs';
import path from 'node:path';
import ort from 'onnxruntime-node';

const [modelPath, jobPath] = process.argv.slice(2);
if (!modelPath || !jobPath) {
  console.error('usage: node ort_infer.mjs <model.onnx> <job.json>');
  process.exit(2);
}
const job = JSON.parse(fs.readFileSync(jobPath, 'utf8'));
const arrays = {
  float32: Float32Array, int64: BigInt64Array, int32: Int32Array, uint8: Uint8Array, int8: Int8Array, bool: Uint8Array,
};

function load(spec) {
  const buf = fs.readFileSync(spec.file);
  const Ctor = arrays[spec.type];
  if (!Ctor) throw new Error(`${spec.file}: unsupported type ${spec.type}`);
  const copy = new Uint8Array(buf.byteLength);
  copy.set(buf);
  return new ort.Tensor(spec.type, new Ctor(copy.buffer), spec.dims);
}

const threads = job.threads ?? 1;
const session = await ort.InferenceSession.create(modelPath, {
  intraOpNumThreads: threads, interOpNumThreads: 1, graphOptimizationLevel: job.optimization ?? 'all',
});
fs.mkdirSync(job.out_dir, { recursive: true });
const result = { samples: [], ms_per_run: 0 };
let totalMs = 0, runs = 0;
for (let s = 0; s < job.samples.length; ++s) {
  const feeds = {};
  for (const spec of job.samples[s]) feeds[spec.name] = load(spec);
  const repeat = Math.max(1, job.repeat ?? 1);
  let out;
  for (let r = 0; r < repeat; ++r) {
    const t0 = process.hrtime.bigint();
    out = await session.run(feeds);
    totalMs += Number(process.hrtime.bigint() - t0) / 1e6;
    ++runs;
  }
  const written = [];
  session.outputNames.forEach((name, k) => {
    const t = out[name];
    const file = path.join(job.out_dir, `${s}_${k}.bin`);
    const data = t.type === 'bool' ? Uint8Array.from(t.data, (v) => (v ? 1 : 0)) : t.data;
    fs.writeFileSync(file, Buffer.from(data.buffer, data.byteOffset, data.byteLength));
    written.push({ name, type: t.type, dims: t.dims.map(Number), file });
  });
  result.samples.push(written);
}
result.ms_per_run = runs ? totalMs / runs : 0;
fs.writeFileSync(path.join(job.out_dir, 'outputs.json'), JSON.stringify(result));
