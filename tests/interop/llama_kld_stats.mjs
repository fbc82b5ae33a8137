// Every statistic `llama-perplexity --kl-divergence` prints, computed from llama.cpp's own logits
// (node-llama-cpp, CPU, one thread) by the procedure of tools/perplexity/perplexity.cpp:
//  - the base model's distribution at each scored position (chunks of ctx tokens, first token
//    replaced by BOS when the vocabulary adds it, positions ctx/2 .. ctx-2) is coded as
//    llama-perplexity's base file codes it: 16-bit steps over [max - 16, max] of the logits,
//    log p = scale * q + min_log_prob;
//  - per position, against each model: NLL of both, KLD (terms with log p_base <= -16 dropped),
//    Δp of the next token, same argmax; float where llama-perplexity uses float (Math.fround);
//  - means with llama-perplexity's errors, its interpolated percentiles, correlation of ln PPL.
//
//   node llama_kld_stats.mjs BASE.gguf MODEL.gguf [MODEL2.gguf ...] (--tokens ids.json | --text FILE)
//                            [--ctx 512] [--chunks K] [--kv-type f16|f32] [--save-logits FILE]
//
// --tokens: a JSON array of token ids used as they are; --text: tokenized by the base model, BOS
// first when it adds one. --save-logits FILE: also write the base codes as a llama-perplexity
// --kl-divergence-base file ("_logits_", int32 n_ctx, n_vocab, n_chunk, int32 tokens, records).
// One JSON line per model on stdout (field names as `shrink eval --kl-divergence --json`), or
// {"model", "error"}; exit 1 when any failed.
import {readFileSync, writeFileSync} from "node:fs";
import {fail, flushLog, loadLlama, loadModel} from "./llama_common.mjs";

const args = process.argv.slice(2);
const models = [];
let textFile = null, tokensFile = null, nCtx = 512, maxChunks = -1, kvType = "f16", saveLogits = null;
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
  else if (a === "--save-logits") saveLogits = value();
  else if (a.startsWith("--")) fail(`unknown option ${a}`);
  else models.push(a);
}
if (models.length < 2 || (textFile == null) === (tokensFile == null))
  fail("usage: node llama_kld_stats.mjs BASE.gguf MODEL.gguf [...] (--tokens F | --text F) [--ctx N] [--chunks K] " +
       "[--kv-type f16|f32] [--save-logits FILE]");
if (kvType !== "f16" && kvType !== "f32") fail(`--kv-type must be f16 or f32, got ${kvType}`);

const f32 = Math.fround;
const first = Math.floor(nCtx / 2);
const nScored = nCtx - 1 - first;

// Evaluates every chunk; visit(chunk, j, logits Float32Array, next token) for scored position first + j.
async function run(llama, modelPath, tokens, nChunks, visit) {
  const model = await loadModel(llama, modelPath);
  try {
    const addBos = model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    const context = await model.createContext({
      contextSize: nCtx, batchSize: nCtx, sequences: 1, threads: 1, flashAttention: false,
      experimentalKvCacheKeyType: kvType.toUpperCase(), experimentalKvCacheValueType: kvType.toUpperCase(),
    });
    try {
      const sequence = context.getSequence();
      for (let c = 0; c < nChunks; c++) {
        await sequence.clearHistory();
        const t = tokens.slice(c * nCtx, (c + 1) * nCtx);
        if (addBos) t[0] = model.tokens.bos;
        const input = t.map((tok, i) => (i >= first && i < nCtx - 1 ? [tok, {generateNext: {logits: true, options: {temperature: 0}}}] : tok));
        const out = await sequence.controlledEvaluate(input);
        for (let j = 0; j < nScored; j++) {
          const map = out[first + j]?.next?.logits;
          if (map == null) throw new Error(`no logits for position ${first + j} of chunk ${c}`);
          const logits = new Float32Array(map.size);
          for (const [tok, v] of map) logits[tok] = v;
          visit(c, j, logits, tokens[c * nCtx + first + j + 1]);
        }
      }
    } finally {
      await context.dispose();
    }
  } finally {
    await model.dispose();
  }
}

function nearestInt(x) {
  return Math.round(f32(x));  // codes are non-negative; ties are measure-zero for these inputs
}

// The base file's record of one position: {scale, minLogProb, q Uint16Array}.
function encode(logits) {
  let max = logits[0], min = logits[0];
  for (let i = 1; i < logits.length; i++) {
    if (logits[i] > max) max = logits[i];
    if (logits[i] < min) min = logits[i];
  }
  min = Math.max(min, f32(max - 16));
  let sumExp = 0;
  for (let i = 0; i < logits.length; i++) sumExp += f32(Math.exp(f32(logits[i] - max)));
  const logSumExp = f32(Math.log(sumExp));
  const minLogProb = f32(f32(min - max) - logSumExp);
  const scale = f32(f32(max - min) / 65535);
  const q = new Uint16Array(logits.length);
  if (scale !== 0) {
    const inv = f32(1 / scale);
    for (let i = 0; i < logits.length; i++) q[i] = logits[i] > min ? nearestInt(f32(inv * f32(logits[i] - min))) : 0;
  }
  return {scale, minLogProb, q};
}

function meanAndError(sum, sum2, count) {
  if (count < 1) return [0, 0];
  const f = sum / count;
  let df = sum2 / count - f * f;
  df = df > 0 && count > 10 ? Math.sqrt(df / (count - 1)) : 0;
  return [f, df];
}

function percentiles(values) {
  const v = Float32Array.from(values).sort();
  const n = v.length;
  const at = (fraction) => {
    let p = f32(fraction * (n - 1));
    const ip = Math.floor(p);
    p = f32(p - ip);
    return f32(f32(f32(1 - p) * v[ip]) + f32(p * v[Math.min(ip + 1, n - 1)]));
  };
  return {max: v[n - 1], "p99.9": at(f32(0.999)), p99: at(f32(0.99)), p95: at(f32(0.95)), p90: at(f32(0.9)),
          p75: at(f32(0.75)), median: n % 2 === 0 ? f32(0.5 * f32(v[n / 2] + v[n / 2 - 1])) : v[(n - 1) / 2],
          p25: at(f32(0.25)), p10: at(f32(0.1)), p5: at(f32(0.05)), p1: at(f32(0.01)), "p0.1": at(f32(0.001)), min: v[0]};
}

let llama;
try {
  llama = await loadLlama();
} catch (e) {
  fail(`cannot load llama.cpp: ${e?.message ?? e}`);
}

let tokens, nChunks, nVocab;
const base = [];  // per scored position, in order
try {
  const model = await loadModel(llama, models[0]);
  if (tokensFile != null) {
    tokens = JSON.parse(readFileSync(tokensFile, "utf8"));
  } else {
    let text = readFileSync(textFile, "utf8");
    if (text.endsWith("\n")) text = text.slice(0, -1);
    tokens = Array.from(model.tokenize(text, false));
    if (model.tokens.shouldPrependBosToken && model.tokens.bos != null) tokens.unshift(model.tokens.bos);
  }
  await model.dispose();
  if (tokens.length < 2 * nCtx) throw new Error(`need at least ${2 * nCtx} tokens, the input has ${tokens.length}`);
  nChunks = Math.floor(tokens.length / nCtx);
  if (maxChunks >= 0) nChunks = Math.min(nChunks, maxChunks);
  await run(llama, models[0], tokens, nChunks, (c, j, logits) => {
    nVocab = logits.length;
    base.push(encode(logits));
  });
  if (saveLogits != null) {
    const nv = 2 * Math.floor((nVocab + 1) / 2) + 4;
    const header = Buffer.alloc(20);
    header.write("_logits_", 0, "latin1");
    header.writeInt32LE(nCtx, 8);
    header.writeInt32LE(nVocab, 12);
    header.writeInt32LE(nChunks, 16);
    const tok = Buffer.from(Int32Array.from(tokens.slice(0, nChunks * nCtx)).buffer);
    const rec = Buffer.alloc(base.length * nv * 2);
    base.forEach((r, k) => {
      const off = k * nv * 2;
      rec.writeFloatLE(r.scale, off);
      rec.writeFloatLE(r.minLogProb, off + 4);
      for (let i = 0; i < nVocab; i++) rec.writeUInt16LE(r.q[i], off + 8 + 2 * i);
    });
    writeFileSync(saveLogits, Buffer.concat([header, tok, rec]));
  }
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
    let k = 0;
    const s = {nll: 0, nll2: 0, nllBase: 0, nllBase2: 0, nllNllBase: 0, kld: 0, kld2: 0, pd: 0, pd2: 0, pd4: 0, sameTop: 0, count: 0};
    const klds = [], pdiffs = [];
    await run(llama, modelPath, tokens, nChunks, (c, j, logits, next) => {
      const b = base[k++];
      let max = logits[0], imax = 0;
      for (let i = 1; i < logits.length; i++) if (logits[i] > max) { max = logits[i]; imax = i; }
      let sumExp = 0;
      for (let i = 0; i < logits.length; i++) sumExp += f32(Math.exp(f32(logits[i] - max)));
      const logSumExp = f32(Math.log(sumExp));
      const nll = f32(f32(max + logSumExp) - logits[next]);
      const nllBase = -f32(f32(b.scale * b.q[next]) + b.minLogProb);
      s.nll += nll; s.nll2 += f32(nll * nll);
      s.nllBase += nllBase; s.nllBase2 += f32(nllBase * nllBase); s.nllNllBase += f32(nll * nllBase);
      const logNorm = f32(max + logSumExp);
      let kld = 0, imaxBase = 0, pMax = 0;
      for (let i = 0; i < logits.length; i++) {
        const lpb = f32(f32(b.scale * b.q[i]) + b.minLogProb);
        if (i === 0 || lpb > pMax) { pMax = lpb; imaxBase = i; }
        if (lpb > -16) kld += f32(f32(Math.exp(lpb)) * f32(f32(lpb - logits[i]) + logNorm));
      }
      s.kld += kld; s.kld2 += kld * kld; s.count++;
      if (imax === imaxBase) s.sameTop++;
      const pd = f32(f32(Math.exp(-nll)) - f32(Math.exp(-nllBase)));
      const pd2 = f32(pd * pd);
      s.pd += pd; s.pd2 += pd2; s.pd4 += pd2 * pd2;
      klds.push(kld); pdiffs.push(pd);
    });
    const n = s.count;
    const logPpl = meanAndError(s.nll, s.nll2, n), logPplBase = meanAndError(s.nllBase, s.nllBase2, n);
    const cov = n < 10 ? 0 : (s.nllNllBase / n - (s.nll / n) * (s.nllBase / n)) / (n - 1);
    const ratio = logPpl[0] - logPplBase[0];
    const ratioError = Math.sqrt(logPpl[1] ** 2 + logPplBase[1] ** 2 - 2 * cov);
    const kl = meanAndError(s.kld, s.kld2, n), pd = meanAndError(s.pd, s.pd2, n), mse = meanAndError(s.pd2, s.pd4, n);
    const rms = Math.sqrt(mse[0]), same = s.sameTop / n;
    result = {model: modelPath, base: models[0], n_ctx: nCtx, n_chunks: nChunks, count: n,
              ppl: Math.exp(logPpl[0]), ppl_error: Math.exp(logPpl[0]) * logPpl[1],
              ppl_base: Math.exp(logPplBase[0]), ppl_base_error: Math.exp(logPplBase[0]) * logPplBase[1],
              log_ppl_cor: cov / (logPpl[1] * logPplBase[1]), log_ppl_ratio: ratio, log_ppl_ratio_error: ratioError,
              ppl_ratio: Math.exp(ratio), ppl_ratio_error: Math.exp(ratio) * ratioError,
              kld_mean: kl[0], kld_error: kl[1], kld: percentiles(klds),
              p_diff_mean: pd[0], p_diff_error: pd[1], p_diff: percentiles(pdiffs),
              p_diff_rms: rms, p_diff_rms_error: rms > 0 ? (0.5 / rms) * mse[1] : 0,
              same_top: same, same_top_error: Math.sqrt((same * (1 - same)) / (n - 1)), kv_type: kvType};
  } catch (e) {
    failures++;
    result = {model: modelPath, error: String(e?.message ?? e)};
  }
  await flushLog();
  process.stdout.write(JSON.stringify(result) + "\n");
}
process.exit(failures === 0 ? 0 : 1);
