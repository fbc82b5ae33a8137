// Greedy decoding with llama.cpp (node-llama-cpp, CPU, one thread).
//
//   node llama_generate.mjs MODEL.gguf [MODEL2.gguf ...] "PROMPT" N_TOKENS
//
// For each model (loaded one after another in a single process, so node and the backend start
// once), prints one JSON line on stdout:
//   {"model": path, "text": continuation, "tokens": [generated ids], "prompt_tokens": [ids],
//    "bos_added": bool, "ms": load+decode milliseconds}
// or, when that model fails to load or run, {"model": path, "error": message}.
// prompt_tokens are what llama.cpp evaluated: the prompt tokenized as llama.cpp does
// (SentencePiece-style leading space included) with BOS prepended when the model asks for it
// (tokenizer.ggml.add_bos_token, true by default for "llama" vocabularies), as llama-cli does.
// Decoding is argmax (temperature 0, no repeat penalty) and stops early at end-of-generation.
// "text" is the detokenized continuation alone (the prompt's text is not repeated).
// Exit code: 0 when every model produced a result, 1 otherwise. llama.cpp's log (warnings and
// errors) goes to stderr, each model's part after a line "--- model: PATH".
import {fail, flushLog, loadLlama, loadModel} from "./llama_common.mjs";

const args = process.argv.slice(2);
if (args.length < 3) fail('usage: node llama_generate.mjs MODEL.gguf [MODEL2.gguf ...] "PROMPT" N_TOKENS');
const nTokens = Number(args[args.length - 1]);
const prompt = args[args.length - 2];
const models = args.slice(0, -2);
if (!Number.isInteger(nTokens) || nTokens < 1) fail(`N_TOKENS must be a positive integer, got "${args[args.length - 1]}"`);

async function generate(llama, modelPath) {
  const started = performance.now();
  const model = await loadModel(llama, modelPath);
  try {
    const promptTokens = model.tokenize(prompt, false);
    const bosAdded = model.tokens.shouldPrependBosToken && model.tokens.bos != null;
    if (bosAdded) promptTokens.unshift(model.tokens.bos);
    if (promptTokens.length === 0) throw new Error("the prompt tokenized to nothing");
    const context = await model.createContext({
      contextSize: promptTokens.length + nTokens + 1,
      batchSize: Math.max(promptTokens.length, 1),
      sequences: 1,
      threads: 1,
      flashAttention: false,
    });
    try {
      const sequence = context.getSequence();
      const generated = [];
      for await (const token of sequence.evaluate(promptTokens, {temperature: 0})) {
        generated.push(token);
        if (generated.length >= nTokens) break;
      }
      const text = model.detokenize(generated, false, promptTokens);
      return {model: modelPath, text, tokens: generated, prompt_tokens: promptTokens, bos_added: bosAdded,
              ms: Math.round(performance.now() - started)};
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
  // Marks where this model's part of llama.cpp's log starts, so a caller can split stderr per model.
  process.stderr.write(`--- model: ${modelPath}\n`);
  let result;
  try {
    result = await generate(llama, modelPath);
  } catch (e) {
    failures++;
    result = {model: modelPath, error: String(e?.message ?? e)};
  }
  await flushLog();
  if (result.error != null) process.stderr.write(`error: ${modelPath}: ${result.error}\n`);
  process.stdout.write(JSON.stringify(result) + "\n");
}
// No llama.dispose(): after a failed load it can leave a promise that never settles, and node
// would then drain its event loop and exit 0. Exit explicitly instead.
process.exit(failures === 0 ? 0 : 1);
