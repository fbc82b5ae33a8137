// KL divergence of quantized models from a base model, computed from llama.cpp's own logits
// (node-llama-cpp, CPU, one thread) the way `llama-perplexity --kl-divergence` does: the text is
// tokenized by the base model, cut into floor(n / ctx) chunks of ctx tokens whose first token is
// BOS, and the second half of each chunk is scored (positions ctx/2 .. ctx-2 predict the next
// token). Per position: KLD = sum_v p_base(v) (log p_base(v) - log p_model(v)).
//
//   node llama_kld.mjs BASE.gguf MODEL.gguf [MODEL2.gguf ...] --text FILE [--bytes N] [--ctx 512] [--chunks K]
//
// --bytes N: use the first N bytes of the text file (cut back to a UTF-8 boundary).
// One JSON line per model on stdout: {"model", "kld_mean", "kld_error", "kld_median", "kld_p99", "kld_max",
// "same_top_percent", "ppl_base", "ppl", "count", "n_chunks"} or {"model", "error"}.
import {readFileSync} from "node:fs";
import {fail, flushLog, loadLlama, loadModel} from "./llama_common.mjs";

const args = process.argv.slice(2);
const models = [];
let textFile = null, nCtx = 512, maxChunks = -1, maxBytes = -1;
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    return args[++i];
  };
  if (a === "--text") textFile = value();
  else if (a === "--ctx") nCtx = Number(value());
  else if (a === "--chunks") maxChunks = Number(value());
  else if (a === "--bytes") maxBytes = Number(value());
  else if (a.startsWith("--")) fail(`unknown option ${a}`);
  else models.push(a);
}
if (models.length < 2 || textFile == null)
  fail("usage: node llama_kld.mjs BASE.gguf MODEL.gguf [...] --text FILE [--bytes N] [--ctx N] [--chunks K]");

let bytes = readFileSync(textFile);
if (maxBytes >= 0 && bytes.length > maxBytes) {
  let end = maxBytes;
  while (end > 0 && (bytes[end] & 0xc0) === 0x80) end--;  // do not cut a UTF-8 sequence
  bytes = bytes.subarray(0, end);
}
const text = bytes.toString("utf8");

// Log-softmax of one position's logits (a Map token -> logit) into `out` (Float32Array, n_vocab).
function logSoftmaxInto(map, out) {
  let max = -Infinity;
  for (const [, v] of map) if (v > max) max = v;
  let sum = 0;
  for (const [, v] of map) sum += Math.exp(v - max);
  const lse = max + Math.log(sum);
  for (const [tok, v] of map) out[tok] = v - lse;
}

// Evaluates every chunk and calls visit(chunk, position, logprobs Float32Array, next token).
async function run(llama, modelPath, tokens, visit) {
  const model = await loadModel(llama, modelPath);
  try {
    const context = await model.createContext({contextSize: nCtx, batchSize: nCtx, sequences: 1, threads: 1, flashAttention: false});
    try {
      const sequence = context.getSequence();
      const nChunks = chunksOf(tokens);
      const first = Math.floor(nCtx / 2);
      for (let c = 0; c < nChunks; c++) {
        await sequence.clearHistory();
        const t = tokens.slice(c * nCtx, (c + 1) * nCtx);
        t[0] = bos;
        const input = t.map((tok, i) => (i >= first && i < nCtx - 1 ? [tok, {generateNext: {logits: true, options: {temperature: 0}}}] : tok));
        const out = await sequence.controlledEvaluate(input);
        for (let i = first; i < nCtx - 1; i++) {
          const map = out[i]?.next?.logits;
          if (map == null) throw new Error(`no logits for position ${i} of chunk ${c}`);
          const lp = new Float32Array(map.size);
          logSoftmaxInto(map, lp);
          visit(c, i, lp, t[i + 1]);
        }
      }
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

let bos = null;
function chunksOf(tokens) {
  let n = Math.floor(tokens.length / nCtx);
  return maxChunks >= 0 ? Math.min(n, maxChunks) : n;
}

let llama;
try {
  llama = await loadLlama();
} catch (e) {
  fail(`cannot load llama.cpp: ${e?.message ?? e}`);
}

// Base pass: tokenize, keep every scored distribution.
let tokens;
const base = [];
let baseNll = 0;
try {
  const model = await loadModel(llama, models[0]);
  tokens = Array.from(model.tokenize(text, false));
  bos = model.tokens.bos;
  if (model.tokens.shouldPrependBosToken && bos != null) tokens.unshift(bos);
  await model.dispose();
  if (chunksOf(tokens) < 1) throw new Error(`need at least ${nCtx} tokens, the text has ${tokens.length}`);
  await run(llama, models[0], tokens, (c, i, lp, next) => {
    base.push(lp);
    baseNll -= lp[next];
  });
} catch (e) {
  await flushLog();
  process.stdout.write(JSON.stringify({model: models[0], error: String(e?.message ?? e)}) + "\n");
  process.exit(1);
}

let failures = 0;
for (const modelPath of models.slice(1)) {
  process.stderr.write(`--- model: ${modelPath}\n`);
  let result;
  try {
    const klds = [];
    let k = 0, nll = 0, sameTop = 0;
    await run(llama, modelPath, tokens, (c, i, lp, next) => {
      const b = base[k++];
      let kld = 0, topB = 0, topM = 0;
      for (let v = 0; v < b.length; v++) {
        const p = Math.exp(b[v]);
        kld += p * (b[v] - lp[v]);
        if (b[v] > b[topB]) topB = v;
        if (lp[v] > lp[topM]) topM = v;
      }
      klds.push(kld);
      nll -= lp[next];
      if (topB === topM) sameTop++;
    });
    const n = klds.length;
    const mean = klds.reduce((s, x) => s + x, 0) / n;
    const variance = klds.reduce((s, x) => s + (x - mean) * (x - mean), 0) / (n - 1);
    const sorted = Float64Array.from(klds).sort();
    result = {model: modelPath, kld_mean: mean, kld_error: Math.sqrt(variance / n), kld_median: sorted[Math.floor(n / 2)],
              kld_p99: sorted[Math.floor(0.99 * (n - 1))], kld_max: sorted[n - 1], same_top_percent: (100 * sameTop) / n,
              ppl_base: Math.exp(baseNll / n), ppl: Math.exp(nll / n), count: n, n_chunks: chunksOf(tokens)};
  } catch (e) {
    failures++;
    result = {model: modelPath, error: String(e?.message ?? e)};
  }
  await flushLog();
  process.stdout.write(JSON.stringify(result) + "\n");
}
process.exit(failures === 0 ? 0 : 1);
