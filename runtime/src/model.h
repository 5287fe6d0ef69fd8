// A loaded .bnx model: its graph of ops (built and checked at load), and runs of it.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "bnx_file.h"
#include "kernels/binary_conv.h"
#include "ops/op.h"

namespace bnext {

struct OpTime {
  std::string name, kind;
  double seconds = 0.0;
};

class Model {
 public:
  // Builds every op from the file (an Error for any field that does not fit) and checks the whole graph
  // by inferring its shapes at the card's input size.
  Model(std::unique_ptr<BnxFile> file, KernelPath path);
  ~Model();

  int64_t in_channels() const { return in_channels_; }
  int64_t height() const { return height_; }
  int64_t width() const { return width_; }
  int64_t multiple() const { return multiple_; }
  int64_t classes() const { return classes_; }
  KernelPath path() const { return path_; }
  const std::string& card_json() const { return card_json_; }
  int threads() const { return threads_; }
  void set_threads(int threads);

  // Output values per image (out_h * out_w * classes; classes for a classifier) for an input size.
  int64_t output_size(int64_t h, int64_t w);
  // images: float NCHW [n][c][h][w]; out: n * output_size(h, w) floats (NHWC order per image).
  void run(const float* images, int64_t n, int64_t c, int64_t h, int64_t w, float* out);
  // The per-op wall times of the last run (empty until profiling is switched on).
  void set_profiling(bool on) { profiling_ = on; }
  // Packed edges (on by default): an op whose output a binary conv reads packs it for that conv as it writes
  // it, and the conv skips its own packing pass. Off: every binary conv packs its input (the same bits).
  void set_packed_edges(bool on) { packed_edges_ = on; }
  const std::vector<OpTime>& op_times() const { return op_times_; }

 private:
  struct Step;
  struct Plan;
  void parse_graph(const json::Value& graph);
  const Plan& plan_for(int64_t n, int64_t h, int64_t w);
  void check_input(int64_t n, int64_t c, int64_t h, int64_t w) const;
  void find_packed_edges();

  std::unique_ptr<BnxFile> file_;
  KernelPath path_;
  int64_t in_channels_ = 0, height_ = 0, width_ = 0, multiple_ = 1, classes_ = 0;
  std::string card_json_;
  int threads_ = 1;
  bool profiling_ = false;
  bool packed_edges_ = true;
  std::vector<Step> steps_;
  int output_ = 0;  // the value holding the logits
  int values_ = 0;  // value 0 is the input
  std::unique_ptr<Plan> plan_;
  std::vector<std::vector<float>> buffers_;
  struct PackedEdge {
    const BinaryConv* conv;       // the reader
    std::vector<uint64_t> words;  // its input's signs
  };
  std::vector<PackedEdge> edges_;  // see find_packed_edges
  std::unique_ptr<ConvScratch> scratch_;
  std::vector<OpTime> op_times_;
};

}  // namespace bnext
