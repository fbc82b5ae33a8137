// `shrink tokenize MODEL --text "..." | --file F [--ids-only] [--no-bos] [--parse-special]`:
// the token ids (and pieces) llama.cpp would produce for the text with MODEL's vocabulary.
// MODEL is anything shrink opens, or a vocabulary-only GGUF (such as llama.cpp's
// ggml-vocab-*.gguf files, which hold no tensors).
#include <cstdio>
#include <fstream>
#include <sstream>

#include "formats/gguf.h"
#include "model/gguf_metadata.h"
#include "model/model_source.h"
#include "model/tokenizer.h"
#include "tools/cli.h"

namespace shrink::cli {
namespace {

struct Args {
  std::string input, tokenizer, text, file;
  bool ids_only = false;
  bool no_bos = false;
  bool parse_special = false;
  CLI::Option* text_option = nullptr;
};

struct LoadedVocab {
  Vocab vocab;
  std::string model_name;
};

Result<LoadedVocab> load_vocab(const Args& a) {
  OpenOptions o;
  o.tokenizer = a.tokenizer;
  auto m = open_model(a.input, o);
  if (m.ok()) return LoadedVocab{std::move(m->vocab), m->config.name};
  // A GGUF with a vocabulary but no weights.
  auto f = GgufFile::open(a.input);
  if (!f.ok()) return m.error();
  auto v = vocab_from_gguf(*f);
  if (!v.ok()) return m.error();
  LoadedVocab out{std::move(*v), {}};
  if (const GgufValue* n = f->find("general.name"); n && n->as_string()) out.model_name = *n->as_string();
  return out;
}

// Control characters and backslashes escaped so each piece stays on one line.
std::string printable(const std::string& s) {
  std::string out;
  for (char c : s) {
    const auto u = static_cast<unsigned char>(c);
    if (c == '\n') out += "\\n";
    else if (c == '\t') out += "\\t";
    else if (c == '\r') out += "\\r";
    else if (c == '\\') out += "\\\\";
    else if (u < 0x20 || u == 0x7F) {
      char buf[8];
      std::snprintf(buf, sizeof buf, "\\x%02X", u);
      out += buf;
    } else {
      out += c;
    }
  }
  return out;
}

int run_tokenize(const Args& a) {
  if (a.file.empty() && (a.text_option == nullptr || a.text_option->count() == 0))
    return fail("tokenize: give the text with --text or --file");
  std::string text = a.text;
  if (!a.file.empty()) {
    std::ifstream in(a.file, std::ios::binary);
    if (!in) return fail("tokenize: cannot read " + a.file);
    std::stringstream ss;
    ss << in.rdbuf();
    text = ss.str();
  }
  auto loaded = load_vocab(a);
  if (!loaded.ok()) return fail(loaded.error());
  TokenizerOptions o;
  o.model_name = loaded->model_name;
  auto tok = Tokenizer::from_vocab(loaded->vocab, o);
  if (!tok.ok()) return fail(Error{a.input + ": " + tok.error().message});
  const std::vector<int32_t> ids = tok->encode(text, /*add_special=*/!a.no_bos, a.parse_special);
  if (a.ids_only) {
    std::string line;
    for (size_t i = 0; i < ids.size(); ++i) line += (i ? " " : "") + std::to_string(ids[i]);
    std::printf("%s\n", line.c_str());
    return 0;
  }
  for (int32_t id : ids) std::printf("%8d -> '%s'\n", id, printable(tok->token_piece(id)).c_str());
  std::printf("%zu tokens\n", ids.size());
  return 0;
}

}  // namespace

void add_tokenize(CLI::App& root, std::vector<Command>& commands) {
  static Args a;
  CLI::App* sub = root.add_subcommand("tokenize", "turn text into token ids as llama.cpp does");
  sub->add_option("model", a.input, "a model shrink opens, or a vocabulary-only .gguf")->required();
  auto* text = sub->add_option("--text", a.text, "the text to tokenize");
  auto* file = sub->add_option("--file", a.file, "read the text from this file (bytes as they are)");
  text->excludes(file);
  a.text_option = text;
  sub->add_option("--tokenizer", a.tokenizer, "llama2.c inputs: the tok*.bin or SentencePiece .model vocabulary");
  sub->add_flag("--ids-only", a.ids_only, "print only the ids, space-separated on one line");
  sub->add_flag("--no-bos", a.no_bos, "do not add the BOS/EOS tokens the vocabulary asks for");
  sub->add_flag("--parse-special", a.parse_special, "turn control-token texts such as <|eot_id|> into those tokens");
  commands.push_back({sub, [] { return run_tokenize(a); }});
}

}  // namespace shrink::cli
