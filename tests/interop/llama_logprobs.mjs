// Per-token log-probabilities and perplexity from llama.cpp (node-llama-cpp, CPU, one thread),
// computed the way llama-perplexity does (tools/perplexity/perplexity.cpp, perplexity()).
//
//   node llama_logprobs.mjs MODEL.gguf [MODEL2.gguf ...] (--text FILE | --tokens FILE) [--ctx N] [--chunks K]
//                           [--kv-type f16|f32]
//
// --text FILE: the file is read as llama-perplexity's -f reads it (one trailing "\n" dropped) and
//   tokenized as common_tokenize(text, add_special=true, parse_special=false): BOS first when the
//   vocabulary adds one. --tokens FILE: a JSON array of token ids, used as they are.
// The tokens are cut into floor(n / ctx) chunks of ctx tokens (at most K with --chunks); each chunk
// is evaluated from an empty KV cache with its first token replaced by BOS when the vocabulary adds
// BOS. For every position i in 0..ctx-2 of a chunk, logprob[i] = log softmax(logits_i)[token_{i+1}]
// (max taken in float, sum of exp in double, as llama-perplexity's log_softmax). Perplexity scores
// positions ctx/2 .. ctx-2 of each chunk: PPL = exp(mean NLL), error = PPL * sqrt(var(NLL)/(N-1)).
// --kv-type: the KV cache's type (llama.cpp's default f16; f32 removes the F16 rounding of keys,
// values, queries and attention weights, whose rounding flips amplify float summation-order noise).
//
// One JSON line per model on stdout:
//   {"model", "n_ctx", "n_chunks", "add_bos", "tokens": [all ids], "logprobs": [[per chunk]],
//    "ppl", "ppl_error", "nll", "count", "eval_ms", "tokens_per_second"}
// or {"model", "error"}. eval_ms / tokens_per_second time a second pass over the same chunks that
// asks for no logits (the first pass returns each position's logits to JS, which dominates).
// Exit 1 when any model failed.
import {readFileSync} from "node:fs";
import {fail, flushLog, loadLlama, loadModel} from "./llama_common.mjs";

const args = process.argv.slice(2);
const models = [];
let textFile = null, tokensFile = null, nCtx = 512, maxChunks = -1, kvType = "f16";
for (let i = 0; i < args.length; i++) {
  const a = args[i];
  const value = () => {
    if (i + 1 >= args.length) fail(`${a} needs a value`);
    return args[++i];
  };
  if (a === "--text") textFile = value();
  else if (a === "--tokens") tokensFile = value();
  else if (a === "--ctx") nCtx = Number(value());
  else if (a === "--chunks") maxChunks = Number(value());
  else if (a === "--kv-type") kvType = value();
  else if (a.startsWith("--")) fail(`unknown option ${a}`);
  else models.push(a);
}
if (models.length === 0 || (textFile == null) === (tokensFile == null))
  fail("usage: node llama_logprobs.mjs MODEL.gguf [...] (--text FILE | --tokens FILE) [--ctx N] [--chunks K]");
if (!Number.isInteger(nCtx) || nCtx < 4) fail(`--ctx must be an integer >= 4, got ${nCtx}`);
if (kvType !== "f16" && kvType !== "f32") fail(`--kv-type must be f16 or f32, got ${kvType}`);

let text = null, givenTokens = null;
if (textFile != null) {
  text = readFileSync(textFile, "utf8");
  if (text.endsWith("\n")) text = text.slice(0, -1);
} else {
  givenTokens = JSON.parse(readFileSync(tokensFile, "utf8"));
  if (!Array.isArray(givenTokens) || !givenTokens.every((t) => Number.isInteger(t) && t >= 0))
    fail(`${tokensFile}: expected a JSON array of token ids`);
}

// llama-perplexity's log_softmax: max in float, sum of expf(logit - max) in double.
function logSoftmax(logits, nVocab, tok) {
  let max = -Infinity;
  for (let i = 0; i < nVocab; i++) if (logits[i] > max) max = logits[i];
  let sum = 0;
  for (let i = 0; i < nVocab; i++) sum += Math.fround(Math.exp(Math.fround(logits[i] - max)));
  return Math.fround(logits[tok] - max) - Math.log(sum);
}

async function evaluate(llama, modelPath) {
  const model = await loadModel(llama, modelPath);
  try {
    const addBos = model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    let tokens;
    if (givenTokens != null) {
      tokens = givenTokens.slice();
    } else {
      tokens = Array.from(model.tokenize(text, false));
      if (addBos) tokens.unshift(model.tokens.bos);
    }
    if (tokens.length < 2 * nCtx)
      throw new Error(`need at least ${2 * nCtx} tokens for ctx ${nCtx}, the input has ${tokens.length}`);
    let nChunks = Math.floor(tokens.length / nCtx);
    if (maxChunks >= 0) nChunks = Math.min(nChunks, maxChunks);
    const context = await model.createContext({
      contextSize: nCtx, batchSize: nCtx, sequences: 1, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: kvType.toUpperCase(), experimentalKvCacheValueType: kvType.toUpperCase(),
    });
    try {
      const sequence = context.getSequence();
      const chunkTokens = (c) => {
        const t = tokens.slice(c * nCtx, (c + 1) * nCtx);
        if (addBos) t[0] = model.tokens.bos;
        return t;
      };
      const first = Math.floor(nCtx / 2);
      const logprobs = [];
      let nll = 0, nll2 = 0, count = 0;
      for (let c = 0; c < nChunks; c++) {
        await sequence.clearHistory();
        const t = chunkTokens(c);
        const input = t.map((tok, i) => (i < nCtx - 1 ? [tok, {generateNext: {logits: true, options: {temperature: 0}}}] : tok));
        const out = await sequence.controlledEvaluate(input);
        const lp = [];
        for (let i = 0; i < nCtx - 1; i++) {
          const map = out[i]?.next?.logits;
          if (map == null) throw new Error(`no logits returned for position ${i} of chunk ${c}`);
          const logits = new Float64Array(map.size);
          for (const [tok, v] of map) logits[tok] = v;
          const v = logSoftmax(logits, map.size, t[i + 1]);
          lp.push(v);
          if (i >= first) {
            nll -= v;
            nll2 += v * v;
            count++;
          }
        }
        logprobs.push(lp);
      }
      // Timing pass: the same chunks, no logits returned to JS.
      const started = performance.now();
      for (let c = 0; c < nChunks; c++) {
        await sequence.clearHistory();
        await sequence.evaluateWithoutGeneratingNewTokens(chunkTokens(c));
      }
      const evalMs = performance.now() - started;
      const mean = nll / count;
      const ppl = Math.exp(mean);
      const variance = nll2 / count - mean * mean;
      const pplError = variance > 0 ? ppl * Math.sqrt(variance / (count - 1)) : 0;
      return {model: modelPath, kv_type: kvType, n_ctx: nCtx, n_chunks: nChunks, add_bos: addBos, tokens, logprobs,
              ppl, ppl_error: pplError, nll: mean, count, eval_ms: evalMs,
              tokens_per_second: (nChunks * nCtx) / (evalMs / 1000)};
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

let llama;
try {
  llama = await loadLlama();
} catch (e) {
  fail(`cannot load llama.cpp: ${e?.message ?? e}`);
}
let failures = 0;
for (const modelPath of models) {
  process.stderr.write(`--- model: ${modelPath}\n`);
  let result;
  try {
    result = await evaluate(llama, modelPath);
  } catch (e) {
    failures++;
    result = {model: modelPath, error: String(e?.message ?? e)};
  }
  await flushLog();
  if (result.error != null) process.stderr.write(`error: ${modelPath}: ${result.error}\n`);
  // Wait for the write: stdout to a pipe is asynchronous, and process.exit() would cut a long line.
  await new Promise((resolve) => process.stdout.write(JSON.stringify(result) + "\n", resolve));
}
process.exit(failures === 0 ? 0 : 1);
