// Where a student's weights come from before distillation:
//   * the teacher with whole blocks removed: --prune-layers N drops the N blocks whose output
//     hidden state is most like their input (block influence BI = 1 - mean cosine(x_in, x_out)
//     over calibration tokens; ShortGPT, Men et al. 2024; the depth pruning of Minitron,
//     Muralidharan et al. 2024), or --every-other-layer keeps blocks 0, 2, 4, ...;
//   * the teacher made narrower: --prune-width ffn=F,heads=H,dim=D keeps the most important
//     FFN channels (mean |silu(gate) * up|, the input of ffn_down), attention heads (mean L2 norm
//     of the head's slice of the attention output, the input of attn_output) and embedding
//     channels (mean |RMSNorm output| entering attn_q and ffn_gate, summed over layers) — the
//     activation-based importance of Minitron, measured with the teacher's inference forward pass;
//   * a config.json (--student-config) with random weights (TrainModel::random).
// Heads are pruned inside each GQA group (the same number kept per group, every KV head kept),
// so the student's groups stay whole; head_dim never changes, so with dim pruned the student
// has head_dim != n_embd / n_head (written as attention.key_length / head_dim).
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <vector>

#include "common/result.h"
#include "distill/train_model.h"
#include "model/llama_config.h"
#include "model/llama_model.h"

namespace shrink::distill {

struct WidthSpec {
  int64_t ffn = 0;    // FFN channels to keep per layer (0: all)
  int64_t heads = 0;  // query heads to keep per layer (0: all)
  int64_t dim = 0;    // embedding channels to keep (0: all)
  bool any() const { return ffn > 0 || heads > 0 || dim > 0; }
};
// "ffn=256,heads=4,dim=96" (any subset, any order). Errors name the bad item.
Result<WidthSpec> parse_width_spec(const std::string& spec);

struct StudentInit {
  int64_t prune_layers = 0;
  bool every_other_layer = false;
  WidthSpec width;
  std::string student_config;  // config.json path: random init of that architecture
  bool from_scratch = false;   // random init of the architecture the options above imply
  uint64_t seed = 0;
  bool any_pruning() const { return prune_layers > 0 || every_other_layer || width.any(); }
};

// Block influence of every teacher layer, (n_layer): 1 - mean over tokens of cos(x_in, x_out).
// `windows` are token windows (n, seq) read by the teacher's F32 training forward.
Result<std::vector<double>> block_influence(TrainModel& teacher, std::span<const int32_t> windows, int64_t seq);

struct WidthImportance {
  std::vector<std::vector<double>> ffn;    // (n_layer, n_ff)
  std::vector<std::vector<double>> heads;  // (n_layer, n_head)
  std::vector<double> embd;                // (n_embd)
};
Result<WidthImportance> width_importance(const LlamaModel& teacher, std::span<const int32_t> windows, int64_t seq);

// The layers kept for `init` (ascending teacher indices) given the block influence.
Result<std::vector<int64_t>> layers_to_keep(const StudentInit& init, int64_t n_layer, const std::vector<double>& bi);

// A student holding the teacher's weights for `keep` layers, width-pruned by `width` with
// `importance` (may be null when width is empty).
Result<TrainModel> prune_teacher(const TrainModel& teacher, const std::vector<int64_t>& keep, const WidthSpec& width,
                                 const WidthImportance* importance);

// The student architecture of a config.json (Hugging Face keys, as formats/hf_model.h reads).
Result<LlamaConfig> read_student_config(const std::string& path);

// Architecture the pruning options imply, without weights (for --from-scratch).
Result<LlamaConfig> pruned_config(const LlamaConfig& teacher, int64_t n_layer_kept, const WidthSpec& width);

}  // namespace shrink::distill
