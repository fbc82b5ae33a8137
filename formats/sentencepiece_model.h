// SentencePiece model files (tokenizer.model): a serialized protobuf `ModelProto`
// (google/sentencepiece src/sentencepiece_model.proto), read by a small bounds-checked
// wire-format parser; libprotobuf is not involved.
//
// Fields read (field number: meaning):
//   ModelProto       1: repeated SentencePiece pieces, 2: TrainerSpec, 3: NormalizerSpec
//   SentencePiece    1: piece (string), 2: score (float), 3: type (enum, default NORMAL)
//   TrainerSpec      3: model_type, 4: vocab_size, 35: byte_fallback, 40-43: unk/bos/eos/pad id,
//                    45-48: unk/bos/eos/pad piece
//   NormalizerSpec   1: name, 3: add_dummy_prefix, 4: remove_extra_whitespaces,
//                    5: escape_whitespaces
// Everything else is skipped by wire type. Defaults are the proto's defaults.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/result.h"
#include "formats/vocab.h"

namespace shrink {

// sentencepiece_model.proto ModelProto.SentencePiece.Type.
enum class SentencePieceType : int32_t {
  NORMAL = 1, UNKNOWN = 2, CONTROL = 3, USER_DEFINED = 4, UNUSED = 5, BYTE = 6,
};

struct SentencePiece {
  std::string piece;
  float score = 0.0f;
  SentencePieceType type = SentencePieceType::NORMAL;
};

struct SentencePieceModel {
  std::vector<SentencePiece> pieces;

  // TrainerSpec.
  int32_t model_type = 1;  // UNIGRAM = 1, BPE = 2, WORD = 3, CHAR = 4
  int32_t vocab_size = 8000;
  bool byte_fallback = false;
  int32_t unk_id = 0, bos_id = 1, eos_id = 2, pad_id = -1;  // as stored; see special ids below
  std::string unk_piece, bos_piece, eos_piece, pad_piece;  // empty = not set

  // NormalizerSpec.
  std::string normalizer_name;
  bool add_dummy_prefix = true;
  bool remove_extra_whitespaces = true;
  bool escape_whitespaces = true;

  // The special ids as SentencePieceProcessor reports them (sentencepiece_processor.cc
  // unk_id()/bos_id()/...): the id of the piece named unk_piece/bos_piece/eos_piece/pad_piece
  // (defaults "<unk>", "<s>", "</s>", "<pad>"), provided that piece is UNKNOWN (for unk) or
  // CONTROL (for the others); otherwise -1. Filled by the parser.
  int32_t special_unk_id = -1, special_bos_id = -1, special_eos_id = -1, special_pad_id = -1;
};

// Parses a serialized ModelProto. Beyond wire-format checks it enforces what SentencePiece's
// own loader enforces (model_interface.cc InitializePieces): at least one piece, no empty
// piece, no piece defined twice, exactly one UNKNOWN piece, BYTE pieces spelled "<0xXX>" and
// only with byte_fallback, and all 256 of them when byte_fallback is set. `file` names the
// file in errors.
Result<SentencePieceModel> parse_sentencepiece_model(const uint8_t* data, size_t size, const std::string& file);
Result<SentencePieceModel> read_sentencepiece_model(const std::string& path);

// The GGUF vocabulary llama.cpp's convert_hf_to_gguf.py writes for a SentencePiece model
// (`_create_vocab_sentencepiece` + `_set_vocab_sentencepiece`), before any Hugging Face side
// files are applied:
//   - tokens are the pieces, scores the piece scores;
//   - token types: UNKNOWN, CONTROL, UNUSED, BYTE carried over, everything else NORMAL
//     (USER_DEFINED pieces become NORMAL: the script only asks IsUnknown/IsControl/IsUnused/
//     IsByte);
//   - model "llama", pre "default";
//   - unk/bos/eos/pad ids: SentencePieceProcessor's (the special_* fields), unset when -1;
//   - add_space_prefix: left unset when add_dummy_prefix is true (llama.cpp's default for
//     "llama" vocabularies is true, and the script writes no key), false otherwise, so that
//     llama.cpp tokenizes like SentencePiece does.
Vocab sentencepiece_to_vocab(const SentencePieceModel& model);

// read_sentencepiece_model + sentencepiece_to_vocab.
Result<Vocab> read_sentencepiece_vocab(const std::string& path);

}  // namespace shrink
