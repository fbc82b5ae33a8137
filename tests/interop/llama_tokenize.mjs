// Tokenization with llama.cpp (node-llama-cpp, vocabulary only).
//
//   node llama_tokenize.mjs [--bos] MODEL.gguf [MODEL2.gguf ...] < strings.json
//
// stdin: a JSON array of strings. stdout: for each model, one line holding a JSON array with one
// array of token ids per input string, in input order.
// The ids are llama_tokenize(text, add_special = false, parse_special = false): no BOS/EOS, and
// text such as "<s>" is plain text, which is how SentencePiece's encode() behaves. For a
// SentencePiece ("llama") vocabulary llama.cpp still adds the dummy-prefix space ("▁") unless the
// file sets tokenizer.ggml.add_space_prefix = false, again as SentencePiece does. Unlike
// SentencePiece models trained with remove_extra_whitespaces (the trainer's default), llama.cpp
// never collapses or strips runs of spaces.
// --bos prepends the BOS id when the model asks for it (tokenizer.ggml.add_bos_token), as
// llama.cpp does before evaluation.
// Exit code: 0 on success; 1 with a message on stderr at the first model that fails to load
// (lines for earlier models are already out). llama.cpp's log goes to stderr, each model's part
// after a line "--- model: PATH".
import {fail, flushLog, loadLlama, readStdin} from "./llama_common.mjs";

let args = process.argv.slice(2);
const withBos = args.includes("--bos");
args = args.filter((a) => a !== "--bos");
if (args.length < 1) fail("usage: node llama_tokenize.mjs [--bos] MODEL.gguf [MODEL2.gguf ...] < strings.json");

let strings;
try {
  strings = JSON.parse(await readStdin());
} catch (e) {
  fail(`stdin is not JSON: ${e.message}`);
}
if (!Array.isArray(strings) || !strings.every((s) => typeof s === "string")) fail("stdin must be a JSON array of strings");

let llama;
try {
  llama = await loadLlama();
} catch (e) {
  fail(`cannot load llama.cpp: ${e?.message ?? e}`);
}
for (const modelPath of args) {
  process.stderr.write(`--- model: ${modelPath}\n`);
  let model;
  try {
    model = await llama.loadModel({modelPath, gpuLayers: 0, vocabOnly: true});
  } catch (e) {
    await flushLog();
    fail(`${modelPath}: ${e?.message ?? e}`);
  }
  const bos = withBos && model.tokens.shouldPrependBosToken ? model.tokens.bos : null;
  const result = strings.map((s) => {
    const ids = model.tokenize(s, false);
    if (bos != null) ids.unshift(bos);
    return ids;
  });
  await flushLog();
  process.stdout.write(JSON.stringify(result) + "\n");
}
// Explicit exit: see llama_generate.mjs on why llama.dispose() is not awaited.
process.exit(0);
