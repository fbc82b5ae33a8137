// Runs a decoder-only ONNX model (input_ids / attention_mask / position_ids / past_key_values.{i}.key|value
// -> logits / present.{i}.key|value, the optimum and ONNX Runtime GenAI names) in ONNX Runtime on the CPU:
// one pass over the first `prompt` tokens with an empty cache, then one token per step feeding each
// step's present.* back as past_key_values.*.
//
// usage: node ort_logits.mjs MODEL.onnx IDS.json PROMPT OUT.f32 [--pad N]
//   IDS.json  a JSON array of token ids
//   PROMPT    how many of them the first pass takes (the rest are decoded one at a time)
//   OUT.f32   receives the logits of every token, in order, as little-endian float32 (n_tokens x vocab)
//   --pad N   run as a batch of two rows: row 0 is N extra tokens followed by the sequence (all
//             attended), row 1 is N masked positions (attention_mask 0, token id 0) followed by the
//             sequence, with positions counted from its first real token. Row 1's logits are written:
//             padding must not change them.
// Prints one JSON line: {"n_tokens", "vocab", "n_layers", "inputs", "outputs", "present_shape"}.
import fs from "node:fs";
import ort from "onnxruntime-node";

function fail(message) {
  process.stderr.write(`error: ${message}\n`);
  process.exit(1);
}

const args = process.argv.slice(2);
let pad = 0;
const padAt = args.indexOf("--pad");
if (padAt >= 0) {
  pad = Number(args[padAt + 1]);
  args.splice(padAt, 2);
}
if (args.length !== 4) fail("usage: node ort_logits.mjs MODEL.onnx IDS.json PROMPT OUT.f32 [--pad N]");
const [modelPath, idsPath, promptArg, outPath] = args;
const ids = JSON.parse(fs.readFileSync(idsPath, "utf8"));
const prompt = Number(promptArg);
if (!Array.isArray(ids) || !(prompt >= 1 && prompt <= ids.length)) fail(`bad token list or prompt length ${promptArg}`);

const session = await ort.InferenceSession.create(modelPath, {
  executionProviders: ["cpu"],
  intraOpNumThreads: 1,  // 2-core machines shared by the whole test run
  interOpNumThreads: 1,
});
const pastNames = session.inputNames.filter((n) => n.startsWith("past_key_values."));
const nLayers = pastNames.length / 2;
// Kv head count and head size from the model's declared input shape (B, n_head_kv, P, head_dim).
const meta = session.inputMetadata ? session.inputMetadata.find((m) => m.name === pastNames[0]) : null;
let kvHeads = meta && meta.shape ? Number(meta.shape[1]) : NaN;
let headDim = meta && meta.shape ? Number(meta.shape[3]) : NaN;
if (!(kvHeads > 0 && headDim > 0)) fail(`cannot read the shape of ${pastNames[0]} from the model`);

const rows = pad > 0 ? 2 : 1;
const i64 = (values, dims) => new ort.Tensor("int64", BigInt64Array.from(values.map((v) => BigInt(v))), dims);

let past = {};
for (const name of pastNames) past[name] = new ort.Tensor("float32", new Float32Array(0), [rows, kvHeads, 0, headDim]);
let pastLen = 0;
const outputs = [];
let vocab = 0;
let presentShape = null;

// One pass over `tokens` (the sequence's ids from index `start`); the first pass also carries the
// N leading positions of the batched mode.
async function step(tokens, start) {
  const lead = pastLen === 0 ? pad : 0;
  const width = lead + tokens.length, total = pastLen + width;
  const inputIds = [], positionIds = [], mask = [];
  for (let r = 0; r < rows; ++r) {
    for (let j = 0; j < width; ++j) {
      const t = j - lead;  // index into `tokens`, negative in the leading positions
      if (r === 0) {
        inputIds.push(t >= 0 ? tokens[t] : ids[j % ids.length]);
        positionIds.push(pad + start + t);
      } else {
        inputIds.push(t >= 0 ? tokens[t] : 0);
        positionIds.push(t >= 0 ? start + t : 0);
      }
    }
    for (let j = 0; j < total; ++j) mask.push(r === 1 && j < pad ? 0 : 1);
  }
  const result = await session.run({
    input_ids: i64(inputIds, [rows, width]),
    attention_mask: i64(mask, [rows, total]),
    position_ids: i64(positionIds, [rows, width]),
    ...past,
  });
  const logits = result.logits;
  vocab = Number(logits.dims[2]);
  for (let t = 0; t < tokens.length; ++t) {
    const off = ((rows - 1) * width + lead + t) * vocab;
    outputs.push(Float32Array.from(logits.data.subarray(off, off + vocab)));
  }
  past = {};
  for (const name of pastNames) past[name] = result[name.replace("past_key_values.", "present.")];
  presentShape = result["present.0.key"].dims.map(Number);
  pastLen = total;
}

await step(ids.slice(0, prompt), 0);
for (let i = prompt; i < ids.length; ++i) await step([ids[i]], i);

const flat = new Float32Array(outputs.length * vocab);
outputs.forEach((row, i) => flat.set(row, i * vocab));
fs.writeFileSync(outPath, Buffer.from(flat.buffer));
process.stdout.write(JSON.stringify({
  n_tokens: outputs.length, vocab, n_layers: nLayers, inputs: session.inputNames, outputs: session.outputNames,
  present_shape: presentShape,
}) + "\n");
