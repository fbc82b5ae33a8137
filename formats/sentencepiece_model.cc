#include "formats/sentencepiece_model.h"

#include <cstring>
#include <map>
#include <memory>

#include "formats/mapped_file.h"

namespace shrink {

namespace {

// Protobuf wire types (protobuf.dev/programming-guides/encoding).
enum WireType : uint32_t { VARINT = 0, I64 = 1, LEN = 2, SGROUP = 3, EGROUP = 4, I32 = 5 };

const char* wire_type_name(uint32_t w) {
  switch (w) {
    case VARINT: return "varint";
    case I64: return "64-bit";
    case LEN: return "length-delimited";
    case SGROUP: return "start-group";
    case EGROUP: return "end-group";
    case I32: return "32-bit";
    default: return "invalid";
  }
}

// A bounds-checked cursor over one protobuf message: [pos, end) inside the whole file, so
// error offsets are file offsets. Never reads outside [pos, end).
class ProtoCursor {
 public:
  ProtoCursor(const uint8_t* base, size_t begin, size_t end, const std::string* file, std::string message)
      : base_(base), pos_(begin), end_(end), file_(file), message_(std::move(message)) {}

  bool done() const { return pos_ >= end_; }
  size_t offset() const { return pos_; }

  Error error(const std::string& what) const { return error_at(pos_, what); }
  Error error_at(size_t at, const std::string& what) const {
    return make_error(*file_ + ": SentencePiece model (protobuf " + message_ + ") at offset " + std::to_string(at) +
                      ": " + what);
  }

  // Base-128 varint, at most 10 bytes, the 10th holding only bit 63.
  Result<uint64_t> varint(const char* what) {
    const size_t start = pos_;
    uint64_t v = 0;
    for (int i = 0; i < 10; ++i) {
      if (pos_ >= end_) return error_at(start, std::string(what) + ": varint runs past the end of the message");
      const uint8_t b = base_[pos_++];
      if (i == 9 && b > 1) return error_at(start, std::string(what) + ": varint overflows 64 bits");
      v |= static_cast<uint64_t>(b & 0x7f) << (7 * i);
      if ((b & 0x80) == 0) return v;
    }
    return error_at(start, std::string(what) + ": varint longer than 10 bytes");
  }

  // A field key: field number and wire type.
  Status key(uint32_t* field, uint32_t* wire) {
    const size_t start = pos_;
    auto k = varint("field key");
    if (!k.ok()) return k.error();
    *wire = static_cast<uint32_t>(*k & 7);
    const uint64_t f = *k >> 3;
    if (f == 0 || f > 0x1fffffff) return error_at(start, "invalid field number " + std::to_string(f));
    *field = static_cast<uint32_t>(f);
    if (*wire == SGROUP || *wire == EGROUP)
      return error_at(start, "field " + std::to_string(f) + " uses the deprecated group encoding, which "
                                                            "SentencePiece models never contain");
    if (*wire != VARINT && *wire != I64 && *wire != LEN && *wire != I32)
      return error_at(start, "field " + std::to_string(f) + " has invalid wire type " + std::to_string(*wire));
    return {};
  }

  // The [begin, end) span of a length-delimited payload, advancing past it.
  Status len_span(const char* what, size_t* begin, size_t* end) {
    const size_t start = pos_;
    auto n = varint(what);
    if (!n.ok()) return n.error();
    if (*n > end_ - pos_)
      return error_at(start, std::string(what) + ": length " + std::to_string(*n) + " exceeds the " +
                                 std::to_string(end_ - pos_) + " bytes left in the message (truncated file?)");
    *begin = pos_;
    pos_ += static_cast<size_t>(*n);
    *end = pos_;
    return {};
  }

  Result<std::string> string(const char* what) {
    size_t b, e;
    SHRINK_CHECK(len_span(what, &b, &e));
    return std::string(reinterpret_cast<const char*>(base_ + b), e - b);
  }

  Result<float> f32(const char* what) {
    if (end_ - pos_ < 4) return error(std::string(what) + ": 32-bit value runs past the end of the message");
    float v;
    std::memcpy(&v, base_ + pos_, 4);  // little-endian on every supported host
    pos_ += 4;
    return v;
  }

  Status skip(uint32_t field, uint32_t wire) {
    const size_t need = wire == I64 ? 8 : wire == I32 ? 4 : 0;
    if (wire == VARINT) {
      auto v = varint("skipped field");
      if (!v.ok()) return v.error();
      return {};
    }
    if (wire == LEN) {
      size_t b, e;
      return len_span("skipped field", &b, &e);
    }
    if (end_ - pos_ < need)
      return error("field " + std::to_string(field) + ": " + wire_type_name(wire) +
                   " value runs past the end of the message");
    pos_ += need;
    return {};
  }

  // Checks that a known field arrives with the wire type the schema gives it.
  Status expect(uint32_t field, uint32_t wire, uint32_t want, const char* name) {
    if (wire == want) return {};
    return error(std::string(name) + " (field " + std::to_string(field) + ") has wire type " +
                 wire_type_name(wire) + ", expected " + wire_type_name(want));
  }

  ProtoCursor sub(size_t begin, size_t end, std::string message) const {
    return ProtoCursor(base_, begin, end, file_, std::move(message));
  }

 private:
  const uint8_t* base_;
  size_t pos_;
  size_t end_;
  const std::string* file_;
  std::string message_;
};

// int32 fields travel as varints of the value sign-extended to 64 bits; protobuf keeps the low
// 32 bits.
int32_t as_int32(uint64_t v) { return static_cast<int32_t>(static_cast<uint32_t>(v)); }

Status parse_piece(ProtoCursor c, SentencePiece* out) {
  while (!c.done()) {
    uint32_t field, wire;
    SHRINK_CHECK(c.key(&field, &wire));
    switch (field) {
      case 1: {
        SHRINK_CHECK(c.expect(field, wire, LEN, "piece"));
        SHRINK_ASSIGN(out->piece, c.string("piece"));
        break;
      }
      case 2: {
        SHRINK_CHECK(c.expect(field, wire, I32, "score"));
        SHRINK_ASSIGN(out->score, c.f32("score"));
        break;
      }
      case 3: {
        SHRINK_CHECK(c.expect(field, wire, VARINT, "type"));
        const size_t at = c.offset();
        SHRINK_ASSIGN(uint64_t t, c.varint("type"));
        if (t < 1 || t > 6)
          return c.error_at(at, "piece type " + std::to_string(static_cast<int64_t>(t)) +
                                    " is not one of NORMAL=1 UNKNOWN=2 CONTROL=3 USER_DEFINED=4 UNUSED=5 BYTE=6");
        out->type = static_cast<SentencePieceType>(t);
        break;
      }
      default:
        SHRINK_CHECK(c.skip(field, wire));
    }
  }
  return {};
}

Status parse_trainer_spec(ProtoCursor c, SentencePieceModel* m) {
  while (!c.done()) {
    uint32_t field, wire;
    SHRINK_CHECK(c.key(&field, &wire));
    int32_t* int_field = nullptr;
    std::string* str_field = nullptr;
    const char* name = "";
    switch (field) {
      case 3: int_field = &m->model_type; name = "model_type"; break;
      case 4: int_field = &m->vocab_size; name = "vocab_size"; break;
      case 40: int_field = &m->unk_id; name = "unk_id"; break;
      case 41: int_field = &m->bos_id; name = "bos_id"; break;
      case 42: int_field = &m->eos_id; name = "eos_id"; break;
      case 43: int_field = &m->pad_id; name = "pad_id"; break;
      case 45: str_field = &m->unk_piece; name = "unk_piece"; break;
      case 46: str_field = &m->bos_piece; name = "bos_piece"; break;
      case 47: str_field = &m->eos_piece; name = "eos_piece"; break;
      case 48: str_field = &m->pad_piece; name = "pad_piece"; break;
      case 35: {
        SHRINK_CHECK(c.expect(field, wire, VARINT, "byte_fallback"));
        SHRINK_ASSIGN(uint64_t v, c.varint("byte_fallback"));
        m->byte_fallback = v != 0;
        continue;
      }
      default:
        SHRINK_CHECK(c.skip(field, wire));
        continue;
    }
    if (int_field != nullptr) {
      SHRINK_CHECK(c.expect(field, wire, VARINT, name));
      SHRINK_ASSIGN(uint64_t v, c.varint(name));
      *int_field = as_int32(v);
    } else {
      SHRINK_CHECK(c.expect(field, wire, LEN, name));
      SHRINK_ASSIGN(*str_field, c.string(name));
    }
  }
  return {};
}

Status parse_normalizer_spec(ProtoCursor c, SentencePieceModel* m) {
  while (!c.done()) {
    uint32_t field, wire;
    SHRINK_CHECK(c.key(&field, &wire));
    bool* flag = nullptr;
    const char* name = "";
    switch (field) {
      case 1: {
        SHRINK_CHECK(c.expect(field, wire, LEN, "name"));
        SHRINK_ASSIGN(m->normalizer_name, c.string("name"));
        continue;
      }
      case 3: flag = &m->add_dummy_prefix; name = "add_dummy_prefix"; break;
      case 4: flag = &m->remove_extra_whitespaces; name = "remove_extra_whitespaces"; break;
      case 5: flag = &m->escape_whitespaces; name = "escape_whitespaces"; break;
      default:
        SHRINK_CHECK(c.skip(field, wire));
        continue;
    }
    SHRINK_CHECK(c.expect(field, wire, VARINT, name));
    SHRINK_ASSIGN(uint64_t v, c.varint(name));
    *flag = v != 0;
  }
  return {};
}

// "<0x00>".."<0xFF>" -> 0..255 (upper-case hex, as sentencepiece ByteToPiece spells them), else -1.
int piece_to_byte(const std::string& p) {
  if (p.size() != 6 || p.compare(0, 3, "<0x") != 0 || p[5] != '>') return -1;
  auto hex = [](char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
  };
  const int hi = hex(p[3]), lo = hex(p[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

std::string quoted(const std::string& s) {
  std::string out = "\"";
  for (unsigned char ch : s.substr(0, 64)) {
    if (ch < 0x20 || ch == 0x7f) {
      static const char* hexd = "0123456789abcdef";
      out += "\\x";
      out += hexd[ch >> 4];
      out += hexd[ch & 15];
    } else {
      out += static_cast<char>(ch);
    }
  }
  return out + (s.size() > 64 ? "...\"" : "\"");
}

// The loader checks of SentencePiece's model_interface.cc InitializePieces, then the
// special ids as sentencepiece_processor.cc derives them.
Status validate_and_resolve(SentencePieceModel* m, const std::string& file) {
  auto fail = [&](const std::string& what) { return make_error(file + ": SentencePiece model: " + what); };
  if (m->pieces.empty()) return fail("has no pieces");
  // NORMAL, USER_DEFINED and UNUSED pieces share one namespace, the other types another
  // (pieces_ vs reserved_id_map_); a name may appear once in each.
  std::map<std::string, int32_t> normal, reserved;
  std::vector<bool> byte_found(256, false);
  int32_t unk = -1;
  for (size_t i = 0; i < m->pieces.size(); ++i) {
    const SentencePiece& sp = m->pieces[i];
    const std::string where = "piece " + std::to_string(i);
    if (sp.piece.empty()) return fail(where + " is empty (pieces must not be empty)");
    const bool is_normal = sp.type == SentencePieceType::NORMAL || sp.type == SentencePieceType::USER_DEFINED ||
                           sp.type == SentencePieceType::UNUSED;
    auto& names = is_normal ? normal : reserved;
    auto [it, inserted] = names.emplace(sp.piece, static_cast<int32_t>(i));
    if (!inserted)
      return fail(where + " " + quoted(sp.piece) + " is already defined as piece " + std::to_string(it->second));
    if (sp.type == SentencePieceType::UNKNOWN) {
      if (unk >= 0) return fail(where + " is a second UNKNOWN piece (the first is piece " + std::to_string(unk) + ")");
      unk = static_cast<int32_t>(i);
    }
    if (sp.type == SentencePieceType::BYTE) {
      if (!m->byte_fallback)
        return fail(where + " " + quoted(sp.piece) + " is a BYTE piece although byte_fallback is false");
      const int b = piece_to_byte(sp.piece);
      if (b < 0) return fail(where + " " + quoted(sp.piece) + " is a BYTE piece not spelled <0xXX>");
      byte_found[static_cast<size_t>(b)] = true;
    }
  }
  if (unk < 0) return fail("no piece has type UNKNOWN (unk is not defined)");
  if (m->byte_fallback) {
    for (int b = 0; b < 256; ++b)
      if (!byte_found[static_cast<size_t>(b)])
        return fail("byte_fallback is true but there is no BYTE piece for byte " + std::to_string(b));
  }

  // PieceToId: reserved names first, then normal ones, else the unknown piece.
  auto piece_to_id = [&](const std::string& name) {
    if (auto it = reserved.find(name); it != reserved.end()) return it->second;
    if (auto it = normal.find(name); it != normal.end()) return it->second;
    return unk;
  };
  auto resolve = [&](const std::string& stored, const char* dflt, SentencePieceType want) {
    const int32_t id = piece_to_id(stored.empty() ? std::string(dflt) : stored);
    return m->pieces[static_cast<size_t>(id)].type == want ? id : -1;
  };
  m->special_unk_id = resolve(m->unk_piece, "<unk>", SentencePieceType::UNKNOWN);
  m->special_bos_id = resolve(m->bos_piece, "<s>", SentencePieceType::CONTROL);
  m->special_eos_id = resolve(m->eos_piece, "</s>", SentencePieceType::CONTROL);
  m->special_pad_id = resolve(m->pad_piece, "<pad>", SentencePieceType::CONTROL);
  return {};
}

}  // namespace

Result<SentencePieceModel> parse_sentencepiece_model(const uint8_t* data, size_t size, const std::string& file) {
  if (size == 0) return make_error(file + ": SentencePiece model: file is empty");
  SentencePieceModel m;
  ProtoCursor c(data, 0, size, &file, "ModelProto");
  while (!c.done()) {
    uint32_t field, wire;
    SHRINK_CHECK(c.key(&field, &wire));
    if (field >= 1 && field <= 3) {
      static const char* const names[] = {"", "pieces", "trainer_spec", "normalizer_spec"};
      SHRINK_CHECK(c.expect(field, wire, LEN, names[field]));
      size_t b, e;
      SHRINK_CHECK(c.len_span(names[field], &b, &e));
      if (field == 1) {
        const size_t index = m.pieces.size();
        m.pieces.emplace_back();
        SHRINK_CHECK(parse_piece(c.sub(b, e, "SentencePiece " + std::to_string(index)), &m.pieces.back()));
      } else if (field == 2) {
        // A repeated embedded message merges into the earlier one, as protobuf parsers do.
        SHRINK_CHECK(parse_trainer_spec(c.sub(b, e, "TrainerSpec"), &m));
      } else {
        SHRINK_CHECK(parse_normalizer_spec(c.sub(b, e, "NormalizerSpec"), &m));
      }
    } else {
      SHRINK_CHECK(c.skip(field, wire));
    }
  }
  SHRINK_CHECK(validate_and_resolve(&m, file));
  return m;
}

Result<SentencePieceModel> read_sentencepiece_model(const std::string& path) {
  SHRINK_ASSIGN(std::shared_ptr<MappedFile> f, MappedFile::open(path));
  return parse_sentencepiece_model(f->data(), f->size(), path);
}

Vocab sentencepiece_to_vocab(const SentencePieceModel& m) {
  Vocab v;
  v.model = "llama";
  v.pre = "default";
  v.tokens.reserve(m.pieces.size());
  v.scores.reserve(m.pieces.size());
  v.token_types.reserve(m.pieces.size());
  for (const SentencePiece& sp : m.pieces) {
    TokenType t = TokenType::NORMAL;
    switch (sp.type) {
      case SentencePieceType::UNKNOWN: t = TokenType::UNKNOWN; break;
      case SentencePieceType::CONTROL: t = TokenType::CONTROL; break;
      case SentencePieceType::UNUSED: t = TokenType::UNUSED; break;
      case SentencePieceType::BYTE: t = TokenType::BYTE; break;
      case SentencePieceType::NORMAL:
      case SentencePieceType::USER_DEFINED: t = TokenType::NORMAL; break;
    }
    v.tokens.push_back(sp.piece);
    v.scores.push_back(sp.score);
    v.token_types.push_back(t);
  }
  if (m.special_unk_id >= 0) v.unk_id = m.special_unk_id;
  if (m.special_bos_id >= 0) v.bos_id = m.special_bos_id;
  if (m.special_eos_id >= 0) v.eos_id = m.special_eos_id;
  if (m.special_pad_id >= 0) v.pad_id = m.special_pad_id;
  if (!m.add_dummy_prefix) v.add_space_prefix = false;
  return v;
}

Result<Vocab> read_sentencepiece_vocab(const std::string& path) {
  SHRINK_ASSIGN(SentencePieceModel m, read_sentencepiece_model(path));
  return sentencepiece_to_vocab(m);
}

}  // namespace shrink
